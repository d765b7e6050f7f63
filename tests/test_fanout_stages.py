"""A big warning's calls written in stages: all of them, each with its first attempts,
and a fan-out cut short is finished by the sweep once its writer's lease lapses, never
twice and never after a Cancel.

The county has 11 responders; stages of 3 then 4 stand in for 1,000 then 10,000.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from dispatcher import fanout_stages
from dispatcher.fanout_stages import StagesWritten, resume_fan_outs
from dispatcher.models import Attempt, Call, Warning
from dispatcher.vocabulary import AttemptStatus, CallState
from tests.scenario import County, cap, county  # noqa: F401  (fixture)

RESPONDERS = 11


@pytest.fixture(autouse=True)
def small_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout_stages, "FIRST_STAGE", 3)
    monkeypatch.setattr(fanout_stages, "STAGE", 4)


@pytest.fixture
def writer_dies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The webhook's process dies once the first stage is committed."""

    async def killed(*args: Any, **kwargs: Any) -> StagesWritten:
        raise RuntimeError("the process was killed")

    monkeypatch.setattr("dispatcher.ingest.write_stages", killed)


async def _state(
    county: County,  # noqa: F811
    warning_id: int,
) -> tuple[Warning, list[Call], Counter[int]]:
    async with county.runtime.db.sessions() as session:
        warning = await session.get(Warning, warning_id)
        assert warning is not None
        calls = list(await session.scalars(select(Call).where(Call.warning_id == warning_id)))
        firsts = Counter(
            await session.scalars(
                select(Attempt.call_id).where(
                    Attempt.warning_id == warning_id, Attempt.purpose == "call"
                )
            )
        )
        return warning, calls, firsts


def _each_called_once_with_first_attempts(calls: list[Call], firsts: Counter[int]) -> None:
    assert len(calls) == RESPONDERS
    assert len({call.responder_id for call in calls}) == RESPONDERS
    # every call has its first attempts, written with it (sms and voice at least)
    assert all(firsts[call.id] >= 2 for call in calls), firsts
    assert len({(call.responder_id, call.code) for call in calls}) == RESPONDERS


async def test_a_big_warning_is_called_in_stages(county: County) -> None:  # noqa: F811
    posted = await county.post(cap("STAGED-1"))
    assert posted["calls"] == RESPONDERS and posted["notes"] == []
    warning, calls, firsts = await _state(county, int(posted["id"]))
    _each_called_once_with_first_attempts(calls, firsts)
    assert warning.fanned_out_at == county.clock.now() and warning.fanout_lease_until is None

    # every stage's sends were enqueued: the worker sends them all without a sweep
    await county.work()
    async with county.runtime.db.sessions() as session:
        unsent = await session.scalar(
            select(func.count())
            .select_from(Attempt)
            .where(Attempt.warning_id == warning.id, Attempt.status == AttemptStatus.QUEUED)
        )
    assert unsent == 0
    # nothing is left for the sweep to resume
    assert (await county.at(5)).fan_outs_resumed == 0


async def test_a_fan_out_cut_short_is_finished_by_the_sweep(
    county: County,  # noqa: F811
    writer_dies: None,
) -> None:
    posted = await county.post(cap("STAGED-2"))
    warning_id = int(posted["id"])
    assert posted["calls"] == 3
    assert posted["notes"] == ["fan-out interrupted after 3 calls: a worker writes the rest"]
    warning, calls, _ = await _state(county, warning_id)
    assert len(calls) == 3 and warning.fanned_out_at is None
    assert warning.fanout_lease_until is not None

    # the first stage is already being sent; within the lease nobody takes over
    report = await county.at(1)
    assert report.fan_outs_resumed == 0
    assert len((await _state(county, warning_id))[1]) == 3

    report = await county.at(2)
    assert report.fan_outs_resumed == RESPONDERS - 3
    warning, calls, firsts = await _state(county, warning_id)
    _each_called_once_with_first_attempts(calls, firsts)
    assert warning.fanned_out_at == county.clock.now() and warning.fanout_lease_until is None
    assert all(call.state != CallState.PENDING or call.started_at for call in calls)
    assert (await county.at(5)).fan_outs_resumed == 0


async def test_two_sweeps_finish_a_fan_out_once(
    county: County,  # noqa: F811
    writer_dies: None,
) -> None:
    warning_id = int((await county.post(cap("STAGED-3")))["id"])
    county.clock.advance(minutes=3)
    written = await asyncio.gather(resume_fan_outs(county.runtime), resume_fan_outs(county.runtime))
    assert sorted(written) == [0, RESPONDERS - 3]
    _, calls, firsts = await _state(county, warning_id)
    _each_called_once_with_first_attempts(calls, firsts)


async def test_a_warning_cancelled_mid_fan_out_gets_no_more_calls(
    county: County,  # noqa: F811
    writer_dies: None,
) -> None:
    warning_id = int((await county.post(cap("STAGED-4")))["id"])
    await county.cancel("STAGED-4")
    report = await county.at(3)
    assert report.fan_outs_resumed == 0
    warning, calls, _ = await _state(county, warning_id)
    assert len(calls) == 3
    assert {call.state for call in calls} == {CallState.CANCELLED}
    assert warning.fanned_out_at is None


async def test_a_stage_stops_when_another_writer_called_first(
    county: County,  # noqa: F811
    writer_dies: None,
) -> None:
    """A writer that stalled past its lease finds its stage taken: it stops, and no one
    is called twice."""
    warning_id = int((await county.post(cap("STAGED-5")))["id"])
    async with county.runtime.db.sessions() as session:
        called = set(
            await session.scalars(select(Call.responder_id).where(Call.warning_id == warning_id))
        )
    county.clock.advance(minutes=3)
    assert await resume_fan_outs(county.runtime) == RESPONDERS - 3
    calls = (await _state(county, warning_id))[1]
    pending = [(c.responder_id, c.region_id) for c in calls if c.responder_id not in called]
    async with county.runtime.db.transaction() as session:
        warning = await session.get(Warning, warning_id)
        assert warning is not None
        # the stalled writer's view: the warning was unfinished when it last looked
        warning.fanned_out_at = None
    written = await fanout_stages.write_stages(county.runtime, warning_id, pending)
    assert written.calls == 0 and not written.finished
    assert written.notes == ["another writer took over the remaining calls"]
    _, calls, firsts = await _state(county, warning_id)
    _each_called_once_with_first_attempts(calls, firsts)
