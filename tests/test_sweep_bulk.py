"""The sweep moves many calls at once: every due call in one sweep, chunk after chunk,
each taking its own step whatever its neighbours in the chunk take, and sweeps running
side by side never step a call twice, open two tasks for a region or two backup calls."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from dispatcher import escalation
from dispatcher.app import create_app
from dispatcher.clock import ManualClock
from dispatcher.digests import send_digests
from dispatcher.directory import import_directory
from dispatcher.escalation import SweepReport, sweep
from dispatcher.models import Attempt, AuditEvent, Call, DoorKnockTask, LadderNotice, Responder
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.security import sign_body
from dispatcher.vocabulary import AttemptPurpose
from dispatcher.worker import run_until_idle
from tests.auth import sign_in
from tests.conftest import SENDER_SECRET, Backend, make_settings
from tests.scenario import cap

COUNTY, TOWN, AWAY = "441799000000", "441799100000", "441799200000"
# One village per level; 9 people in each: 0-7 stay silent, 8 answers at once.
VILLAGES = {"red": "441799100001", "orange": "441799100002", "yellow": "441799100003"}
VILLAGES["blue"] = "441799100004"
PEOPLE = 9
POLICIES: dict[str, Any] = {
    "orange": {
        "channels": ["sms"],
        "answer_within_min": 5,
        "ladder": [
            {"step": "call_backup", "at_min": 5},
            {"step": "notify_up", "at_min": 10, "level": "county"},
            {"step": "door_knock", "at_min": 15},
        ],
    },
    "yellow": {
        "channels": ["sms"],
        "answer_within_min": 5,
        "ladder": [
            {"step": "notify_supervisor", "at_min": 5},
            {"step": "door_knock", "at_min": 10},
        ],
    },
    "blue": {
        "channels": ["sms", "wechat"],
        "answer_within_min": 5,
        "ladder": [
            {"step": "door_knock", "at_min": 5},
            {"step": "call_again", "at_min": 10, "channels": ["sms"]},
        ],
    },
}  # red keeps the default: call again, backup, supervisor, door-knock at 5/10/15/20


def phone(key: str) -> str:
    return f"+86{_number(key)}"


def _number(key: str) -> str:
    return f"138{zlib.crc32(key.encode()) % 10**8:08d}"


def _directory(folder: Path) -> None:
    regions = [
        "code,name,level,parent_code",
        f"{COUNTY},青溪县,county,",
        f"{TOWN},城关镇,township,{COUNTY}",
        f"{AWAY},河口镇,township,{COUNTY}",
        f"{AWAY[:-1]}1,河口村,village,{AWAY}",
    ] + [f"{code},{level}村,village,{TOWN}" for level, code in VILLAGES.items()]
    people = [
        "id,name,phone,wecom_userid,role,region_codes,backup_id,supervisor_id",
        f"c1,县值班员,{_number('c1')},,county_duty,{COUNTY},,",
        f"t1,王镇长,{_number('t1')},,township_leader,{TOWN},,c1",
        f"td,城关值班,{_number('td')},,township_duty,{TOWN},,t1",
        # backups who live elsewhere, so the warnings do not call them
        f"k1,后备一,{_number('k1')},,village_cadre,{AWAY[:-1]}1,,",
        f"k2,后备二,{_number('k2')},,village_cadre,{AWAY[:-1]}1,,",
    ]
    for level, code in VILLAGES.items():
        for n in range(PEOPLE):
            key = f"{level}{n}"
            backup = "k1" if n < 4 else "k2" if n < 6 else ""
            supervisor = "t1" if n < 5 else "td"
            wecom = f"u-{key}" if level == "blue" else ""
            people.append(
                f"{key},{level}员{n},{_number(key)},{wecom},village_cadre,{code},{backup},{supervisor}"
            )
    (folder / "regions.csv").write_text("\n".join(regions) + "\n", encoding="utf-8")
    (folder / "responders.csv").write_text("\n".join(people) + "\n", encoding="utf-8")


class World:
    def __init__(self, runtime: Runtime, clock: ManualClock, client: httpx.AsyncClient) -> None:
        self.runtime, self.clock, self.client = runtime, clock, client
        self.warnings: dict[str, int] = {}

    async def warn_every_level(self) -> None:
        for level, code in VILLAGES.items():
            body = cap(f"BULK-{level}", level, codes=(code,))
            ts = str(int(self.clock.now().timestamp()))
            response = await self.client.post(
                "/api/v1/warnings",
                content=body,
                headers={
                    "X-Jiaoying-Timestamp": ts,
                    "X-Jiaoying-Signature": sign_body(SENDER_SECRET, ts, body),
                    "Content-Type": "application/cap+xml",
                },
            )
            assert response.status_code == 202, response.text
            self.warnings[level] = int(response.json()["id"])
        await run_until_idle(self.runtime)
        for level in VILLAGES:
            response = await self.client.post(
                "/hooks/sms/inbound", data={"From": phone(f"{level}8"), "Body": "1"}
            )
            assert response.status_code == 200
        await run_until_idle(self.runtime)

    async def sweep_at(self, minutes: float, sweeps: int = 1) -> list[SweepReport]:
        self.clock.advance(minutes=minutes)
        reports = await asyncio.gather(*(sweep(self.runtime) for _ in range(sweeps)))
        await run_until_idle(self.runtime)
        return list(reports)

    async def rows(self, query: Any) -> list[Any]:
        async with self.runtime.db.sessions() as session:
            return list((await session.execute(query)).all())

    async def steps(self) -> dict[str, list[str]]:
        """Who took which steps, in order, by the person's key."""
        rows = await self.rows(
            select(Responder.external_id, AuditEvent.detail)
            .join(Call, Call.id == AuditEvent.call_id)
            .join(Responder, Responder.id == Call.responder_id)
            .where(AuditEvent.kind == "call.escalated")
            .order_by(AuditEvent.id)
        )
        taken: dict[str, list[str]] = {}
        for key, detail in rows:
            taken.setdefault(key, []).append(detail["kind"])
        return taken

    async def texts(self, key: str, purpose: str) -> list[str]:
        rows = await self.rows(
            select(Attempt.body)
            .where(Attempt.address == phone(key), Attempt.purpose == purpose)
            .order_by(Attempt.id)
        )
        return [body or "" for (body,) in rows]

    async def count(self, model: Any, *where: Any) -> int:
        async with self.runtime.db.sessions() as session:
            found = await session.scalar(select(func.count()).select_from(model).where(*where))
            return int(found or 0)


@asynccontextmanager
async def world(
    backend: Backend, clock: ManualClock, tmp_path: Path, batch: int
) -> AsyncIterator[World]:
    settings = make_settings(backend, worker={"sweep_batch": batch}, policies=POLICIES)
    runtime = await open_runtime(settings, clock=clock, migrate=False, redis=backend.redis_handle)
    folder = tmp_path / "directory"
    folder.mkdir()
    _directory(folder)
    async with runtime.db.transaction() as session:
        await import_directory(session, folder)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime)))
    client.base_url = httpx.URL("http://testserver")
    await sign_in(client, runtime)
    try:
        yield World(runtime, clock, client)
    finally:
        await client.aclose()
        await runtime.aclose()


def silent(level: str) -> list[str]:
    return [f"{level}{n}" for n in range(PEOPLE - 1)]


# Whom the ladder tells of which silent people by the 10-minute sweep. yellow: t1 of people
# 0-4 and td of 5-7 (their supervisors); orange: the county's c1 of all eight.
TOLD = {
    "t1": [f"yellow员{n}" for n in range(5)],
    "td": [f"yellow员{n}" for n in range(5, 8)],
    "c1": [f"orange员{n}" for n in range(8)],
}


def _named(digests: list[str]) -> list[str]:
    """The people these digests name, as often as they name them."""
    return [name for text in digests for name in re.findall(r"(\w+员\d)（", text)]


async def _check_first_two_sweeps(w: World, first: int, second: int, sweeps: int) -> None:
    """What two rounds of sweeps (at 5 and at 10 minutes) did, however they were chunked,
    and with `sweeps` sweeps side by side in each."""
    steps = await w.steps()
    assert first == 4 * 8  # every silent call of every level, in one sweep
    for key in silent("red"):
        assert steps[key] == ["call_again", "call_backup"]
        again = await w.rows(
            select(Attempt.channel, Attempt.try_number)
            .join(Call, Call.id == Attempt.call_id)
            .join(Responder, Responder.id == Call.responder_id)
            .where(Responder.external_id == key, Attempt.try_number == 2)
        )
        assert sorted(again) == [("sms", 2), ("voice", 2)]
    for key in silent("orange"):
        assert steps[key] == ["call_backup", "notify_up"]
    for key in silent("yellow"):
        assert steps[key] == ["notify_supervisor", "door_knock"]
    for key in silent("blue"):
        assert steps[key] == ["door_knock", "call_again"]
    for key in ("red8", "orange8", "yellow8", "blue8", "c1", "t1", "td"):
        assert key not in steps
    # orange at 5, red at 10: one backup call per backup person and warning, though four
    # and two people share them, each with its own answer code; orange's were sent,
    # delivered and took their own first step at 10 minutes
    backups = await w.rows(
        select(Responder.external_id, Call.warning_id, Call.code)
        .join(Call, Call.responder_id == Responder.id)
        .where(Call.origin == "backup")
    )
    orange, red = w.warnings["orange"], w.warnings["red"]
    assert sorted((key, warning) for key, warning, _ in backups) == sorted(
        [("k1", orange), ("k2", orange), ("k1", red), ("k2", red)]
    )
    for key in ("k1", "k2"):
        codes = [code for who, _, code in backups if who == key]
        assert all(codes) and len(set(codes)) == 2
    assert steps["k1"] == steps["k2"] == ["call_backup"]  # a backup has no backup
    assert second == 8 + 8 + 8 + 8 + 2
    # Each person told in one digest. A sweep beside others may send what their chunks queued
    # as they commit, so raced sweeps may split a digest, one part per sweep at most.
    for recipient, names in TOLD.items():
        texts = await w.texts(recipient, AttemptPurpose.NOTICE)
        assert 1 <= len(texts) <= sweeps
        if sweeps == 1:
            assert f"以下{len(names)}人" in texts[0]
        assert Counter(_named(texts)) == Counter(names), (recipient, texts)
    notices = await w.rows(select(LadderNotice.call_id, LadderNotice.kind))
    assert len(notices) == len(set(notices)) == 8 + 8
    # blue at 5, yellow at 10: one task for each village, every silent call on it,
    # its assignee (the one who answered) told once
    for level in ("blue", "yellow"):
        tasks = await w.rows(
            select(DoorKnockTask.id, DoorKnockTask.assignee_id).where(
                DoorKnockTask.warning_id == w.warnings[level]
            )
        )
        assert len(tasks) == 1
        on_task = await w.count(Call, Call.door_knock_task_id == tasks[0][0])
        assert on_task == 8
        assert len(await w.texts(f"{level}8", AttemptPurpose.TASK)) == 1
    assert await w.count(DoorKnockTask) == 2
    # every send the sweeps made went out
    assert await w.count(Attempt, Attempt.status.in_(("queued", "sending"))) == 0


@pytest.mark.parametrize("batch", [5, 500])
async def test_one_sweep_moves_every_due_call_its_own_step(
    backend: Backend, clock: ManualClock, tmp_path: Path, batch: int
) -> None:
    async with world(backend, clock, tmp_path, batch) as w:
        await w.warn_every_level()
        [first] = await w.sweep_at(5)
        [second] = await w.sweep_at(5)
        await _check_first_two_sweeps(w, first.steps, second.steps, sweeps=1)
        assert first.digests == 2 and second.digests == 1
        # at 15: red's supervisors, orange's door-knock, orange's backups tell the county
        # and red's backups are called again
        [third] = await w.sweep_at(5)
        assert third.steps == 8 + 8 + 2 + 2
        steps = await w.steps()
        for key in ("k1", "k2"):  # the last two, one per warning, in the same sweep
            assert steps[key][0] == "call_backup"
            assert sorted(steps[key][1:]) == ["call_again", "notify_up"]
        assert (await w.sweep_at(0)).pop().steps == 0


async def test_sweeps_side_by_side_step_each_call_once(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with world(backend, clock, tmp_path, 3) as w:
        await w.warn_every_level()
        first = await w.sweep_at(5, sweeps=3)
        second = await w.sweep_at(5, sweeps=3)
        await _check_first_two_sweeps(
            w, sum(r.steps for r in first), sum(r.steps for r in second), sweeps=3
        )
        events = await w.rows(
            select(AuditEvent.call_id, AuditEvent.detail).where(AuditEvent.kind == "call.escalated")
        )
        per_step = Counter((call_id, detail["step"]) for call_id, detail in events)
        assert set(per_step.values()) == {1}


async def test_a_sweep_with_less_than_a_chunk_due_takes_it_in_one_chunk(
    backend: Backend, clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lanes start only once a first chunk came back full: two lanes racing for a few due
    calls would each take part of a region's silent people, and the door-knock task's
    assignee would be told of only some of them."""
    chunks: list[int] = []
    step_chunk = escalation._step_chunk

    async def counted(runtime: Runtime, size: int) -> Any:
        taken, outcome = await step_chunk(runtime, size)
        chunks.append(taken)
        return taken, outcome

    monkeypatch.setattr(escalation, "_step_chunk", counted)
    async with world(backend, clock, tmp_path, 500) as w:
        await w.warn_every_level()
        [report] = await w.sweep_at(5)
    assert report.steps > 0
    assert chunks == [report.steps]


async def test_a_digest_sent_between_chunks_leaves_the_rest_to_the_next(
    backend: Backend, clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another sweep's digest phase may run while this sweep is still stepping: the
    supervisor then gets the people stepped so far, and the rest in a later digest, each
    named once."""
    step_chunk = escalation._step_chunk

    async def digest_after(runtime: Runtime, size: int) -> Any:
        taken, outcome = await step_chunk(runtime, size)
        await send_digests(runtime)
        return taken, outcome

    monkeypatch.setattr(escalation, "_step_chunk", digest_after)
    async with world(backend, clock, tmp_path, 3) as w:
        await w.warn_every_level()
        await w.sweep_at(5)
        texts = await w.texts("t1", AttemptPurpose.NOTICE)
        assert len(texts) > 1
        assert sorted(_named(texts)) == TOLD["t1"]
