"""The ladder when things go wrong: a Cancel mid-ladder, a worker killed mid-sweep, two
sweeps at once, calls no channel can deliver, quiet hours, and telling the next level up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dispatcher.clock import ManualClock
from dispatcher.escalation import sweep
from dispatcher.fanout import mark_contact_bad
from dispatcher.messages import Renderer
from dispatcher.models import AuditEvent, DoorKnockTask, LadderNotice
from dispatcher.vocabulary import AttemptPurpose
from tests.conftest import Backend
from tests.scenario import PHONE, County, county, county_with

__all__ = ["county"]


class WorkerKilled(BaseException):
    """Stands for the process dying: nothing in the sweep catches it."""


class DyingRenderer(Renderer):
    """Renders as usual until the `nth` message from `template`, where the worker dies."""

    def __init__(self, template: str, nth: int = 1) -> None:
        super().__init__()
        self.template, self.left = template, nth

    def render(self, name: str, **context: Any) -> str:
        if name == self.template:
            self.left -= 1
            if self.left == 0:
                raise WorkerKilled(name)
        return super().render(name, **context)


async def _count(county: County, model: Any, *where: Any) -> int:
    async with county.runtime.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _step_events(county: County, kind: str) -> list[int]:
    async with county.runtime.db.sessions() as session:
        rows = await session.execute(
            select(AuditEvent.call_id, AuditEvent.detail).where(AuditEvent.kind == "call.escalated")
        )
        return sorted(call_id for call_id, detail in rows.all() if detail["kind"] == kind)


async def _die_in_sweep(county: County, renderer: Renderer, minutes: float) -> None:
    county.clock.advance(minutes=minutes)
    normal, county.runtime.renderer = county.runtime.renderer, renderer
    try:
        with pytest.raises(WorkerKilled):
            await sweep(county.runtime)
    finally:
        county.runtime.renderer = normal


async def test_cancel_mid_ladder_stops_everything(county: County) -> None:
    rain = await county.warn("RAIN", "red", codes=("441799100001",))
    wind = await county.warn("WIND", "red", codes=("441799100001",), event="大风")
    await county.work()
    await county.text("a3", "1")  # a3 answers both; a1 and a2 stay silent
    await county.work()
    await county.at(5)
    await county.at(5)
    # at 15 min the worker dies while sending the supervisor digest: notices are queued
    await _die_in_sweep(county, DyingRenderer("supervisor_digest"), 5)
    assert await _count(county, LadderNotice, LadderNotice.sent_at.is_(None)) == 4
    await county.cancel("RAIN")
    calls = await county.calls(rain)
    assert {calls["a1"].state, calls["a2"].state} == {"cancelled"}
    report = await county.at(1)
    # the digest goes out for the warning still active only
    digests = await county.texts_to("t1", AttemptPurpose.NOTICE)
    assert report.digests == 1 and len(digests) == 1 and "大风" in digests[0]
    assert "暴雨" not in digests[0]
    assert await _count(county, LadderNotice, LadderNotice.sent_at.is_(None)) == 0
    await county.at(4)  # 20 min: door-knocking for the wind warning only
    assert len(await county.tasks(wind)) == 1 and await county.tasks(rain) == []
    await county.cancel("WIND")
    before = await county.texts_to("t1")
    for minutes in (10, 30, 600):
        report = await county.at(minutes)
        assert (report.steps, report.digests, report.tasks_escalated) == (0, 0, 0)
    assert await county.texts_to("t1") == before
    # a late reply to a cancelled warning is not an answer; it is kept for supervisors
    await county.text("a1", "1")
    await county.work()
    assert (await county.calls(rain))["a1"].state == "cancelled"
    assert "没有待确认" in (await county.texts_to("a1", AttemptPurpose.REPLY))[-1]


async def test_worker_killed_mid_sweep_next_sweep_finishes_once(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with county_with(backend, clock, tmp_path, worker={"sweep_batch": 3}) as county:
        warning = await county.warn("KILL", "red", codes=("441799100000",))
        await county.work()
        await county.text("b3", "1")
        await county.work()
        for _ in range(3):
            await county.at(5)
        silent = {k: c for k, c in (await county.calls(warning)).items() if k != "b3"}
        assert len(await _step_events(county, "notify_supervisor")) == len(silent)
        digests = await county.texts_to("t1", AttemptPurpose.NOTICE)
        assert len(digests) == 1  # one digest for everyone under t1
        # at 20 min the worker dies handing over the third new task, in the second chunk
        # of three calls to open tasks (the first opened two): the first is committed (on
        # PostgreSQL, so is a chunk another lane of the sweep held then), the chunk it
        # died in is rolled back
        await _die_in_sweep(county, DyingRenderer("door_knock", nth=3), 5)
        done_first = await _step_events(county, "door_knock")
        assert 0 < len(done_first) < len(silent)
        tasks_first = await county.tasks(warning)
        report = await sweep(county.runtime)
        await county.work()
        assert report.steps == len(silent) - len(done_first)
        door_knocks = await _step_events(county, "door_knock")
        assert sorted(door_knocks) == sorted(c.id for c in silent.values())  # each once
        tasks = await county.tasks(warning)
        assert [t.id for t in tasks[: len(tasks_first)]] == [t.id for t in tasks_first]
        regions = [t.region_id for t in tasks]
        assert len(regions) == len(set(regions))  # one task per region, never two
        handovers = await county.texts_to("b3", AttemptPurpose.TASK)
        assert len(handovers) == len(tasks)  # each task handed over once
        # nothing is left to do, and nothing is done twice
        assert (await sweep(county.runtime)).steps == 0
        assert len(await county.texts_to("t1", AttemptPurpose.NOTICE)) == 1


async def test_two_sweeps_at_once_apply_each_step_once(county: County) -> None:
    warning = await county.warn("RACE", "red")
    await county.work()
    await county.text("b3", "1")
    await county.work()
    for minutes in (5, 5, 5):
        county.clock.advance(minutes=minutes)
        await asyncio.gather(sweep(county.runtime), sweep(county.runtime))
        await county.work()
    county.clock.advance(minutes=5)
    await asyncio.gather(sweep(county.runtime), sweep(county.runtime), sweep(county.runtime))
    await county.work()
    calls = await county.calls(warning)
    silent = [c for k, c in calls.items() if k != "b3" and c.origin == "duty"]
    for kind in ("call_again", "call_backup", "notify_supervisor", "door_knock"):
        applied = await _step_events(county, kind)
        assert len(applied) == len(set(applied)) == len(silent), kind
    regions = [t.region_id for t in await county.tasks(warning)]
    assert len(regions) == len(set(regions))
    assert len(await county.texts_to("t1", AttemptPurpose.NOTICE)) in (1, 2)


async def test_undeliverable_calls_jump_to_door_knocking(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    behaviour = {"simulated": {"delivery_rate": 0.0, "answer_rate": 0.0}}
    async with county_with(backend, clock, tmp_path, providers=behaviour) as county:
        warning = await county.warn("DEAD", "red", codes=("441799100001",))
        await county.work()  # every send is accepted, then reported failed / not picked up
        report = await county.at(1)
        assert report.undeliverable == 3
        assert len(await county.tasks(warning)) == 1  # at once, not after 20 minutes
        for call in (await county.calls(warning)).values():
            assert await county.steps(call.id) == ["door_knock"]
        # nobody answered anywhere near: the supervisor is told there is nobody to send
        assert any("无法派单" in t for t in await county.texts_to("t1"))


async def test_a_call_never_sent_jumps_to_door_knocking(county: County) -> None:
    async with county.runtime.db.transaction() as session:
        await mark_contact_bad(session, PHONE["a2"])  # 李四's only contact
    warning = await county.warn("NO-PHONE", "red", codes=("441799100001",))
    await county.work()
    report = await county.at(1)
    assert report.undeliverable == 1
    calls = await county.calls(warning)
    assert calls["a2"].state != "calling"  # no send was ever made
    assert await county.steps(calls["a2"].id) == ["door_knock"]
    assert [await county.steps(calls[key].id) for key in ("a1", "a3")] == [[], []]


async def test_quiet_hours_defer_blue_never_red(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    clock.set(datetime(2026, 7, 1, 15, 30, tzinfo=UTC))  # 23:30 in Shanghai
    quiet = {"levels": ["blue"], "start": "22:00", "end": "07:00"}
    async with county_with(backend, clock, tmp_path, quiet_hours=quiet) as county:
        blue = await county.warn("NIGHT-BLUE", "blue", codes=("441799100001",))
        red = await county.warn("NIGHT-RED", "red", codes=("441799100002",))
        await county.work()
        assert all(c.delivered_at for c in (await county.calls(red)).values())
        assert not any(c.delivered_at for c in (await county.calls(blue)).values())
        assert await county.texts_to("a1", AttemptPurpose.CALL) == [""]  # queued, unsent
        await county.at(7 * 60 + 29)  # 06:59: still quiet
        assert not any(c.delivered_at for c in (await county.calls(blue)).values())
        await county.at(1)  # 07:00 in Shanghai
        calls = await county.calls(blue)
        assert all(c.delivered_at == clock.now() for c in calls.values())
        assert "预警" in (await county.texts_to("a1", AttemptPurpose.CALL))[0]


async def test_notify_up_tells_the_county_duty_office(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    ladder = [
        {"step": "notify_supervisor", "at_min": 5},
        {"step": "notify_up", "at_min": 10, "level": "county"},
    ]
    policies = {"orange": {"channels": ["sms"], "answer_within_min": 5, "ladder": ladder}}
    async with county_with(backend, clock, tmp_path, policies=policies) as county:
        warning = await county.warn("UP", "orange", codes=("441799100000",))
        await county.work()
        await county.at(5)
        await county.at(5)
        calls = await county.calls(warning)
        assert {c.state for c in calls.values()} == {"unanswered"}
        # c1 supervises 王镇长 (his digest at 5 min), then hears of everyone silent in the
        # township at 10 min: one digest, not one text per person
        to_county = await county.texts_to("c1", AttemptPurpose.NOTICE)
        assert len(to_county) == 2 and "以下1人" in to_county[0]
        assert "以下8人" in to_county[1]
        assert all(name in to_county[1] for name in ("王镇长", "张三", "赵五"))
        assert len(await county.texts_to("t1", AttemptPurpose.NOTICE)) == 1
        assert await _count(county, DoorKnockTask) == 0


async def test_a_later_digest_counts_those_still_silent_from_earlier(county: County) -> None:
    await county.warn("FIRST", "red", codes=("441799100001",))
    await county.work()
    await county.at(3)
    await county.warn("SECOND", "red", codes=("441799100002",), event="大风")
    await county.work()
    for _ in range(3):
        await county.at(4)  # 15 min after the first warning's sends: its digest
    first = await county.texts_to("t1", AttemptPurpose.NOTICE)
    assert len(first) == 1 and "以下3人" in first[0] and "此前" not in first[0]
    await county.at(3)  # 15 min after the second's
    digests = await county.texts_to("t1", AttemptPurpose.NOTICE)
    assert len(digests) == 2 and "以下3人" in digests[1] and "大风" in digests[1]
    assert "另有3人此前已通报" in digests[1]
