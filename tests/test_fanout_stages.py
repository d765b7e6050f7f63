"""A big warning's calls written in stages: all of them before the 202, the first stage
with its first attempts and the others' written by workers, once each; a fan-out cut
short is finished by the sweep once its writer's lease lapses, never twice and never
after a Cancel; a lost job writing sends is enqueued again; calls whose sends are not
written yet are not taken for undeliverable.

The county has 11 responders; stages of 3 then 4 stand in for 1,000 then 10,000.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from arq.constants import job_key_prefix
from sqlalchemy import select

from dispatcher import fanout_stages
from dispatcher.fanout_stages import StagesWritten, resume_fan_outs, write_first_sends
from dispatcher.models import Attempt, Call, FanoutRange, Warning
from dispatcher.queue import REFRESH_STATISTICS
from dispatcher.vocabulary import CallState
from tests.locks import until_a_lock_is_awaited
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


async def _firsts_by_channel(county: County, warning_id: int) -> Counter[tuple[int, str]]:  # noqa: F811
    async with county.runtime.db.sessions() as session:
        rows = await session.execute(
            select(Attempt.call_id, Attempt.channel).where(
                Attempt.warning_id == warning_id, Attempt.purpose == "call"
            )
        )
        return Counter((call_id, channel) for call_id, channel in rows)


async def _unwritten_ranges(county: County, warning_id: int) -> list[int]:  # noqa: F811
    async with county.runtime.db.sessions() as session:
        return list(
            await session.scalars(
                select(FanoutRange.id).where(
                    FanoutRange.warning_id == warning_id, FanoutRange.written_at.is_(None)
                )
            )
        )


def _each_called_once_with_first_attempts(calls: list[Call], firsts: Counter[int]) -> None:
    assert len(calls) == RESPONDERS
    assert len({call.responder_id for call in calls}) == RESPONDERS
    # every call has its first attempts (sms and voice at least)
    assert all(firsts[call.id] >= 2 for call in calls), firsts
    assert len({(call.responder_id, call.code) for call in calls}) == RESPONDERS


async def test_a_big_warning_is_called_in_stages(county: County) -> None:  # noqa: F811
    posted = await county.post(cap("STAGED-1"))
    assert posted["calls"] == RESPONDERS and posted["notes"] == []
    warning, calls, firsts = await _state(county, int(posted["id"]))
    # every call is on record at the 202, the first stage with its sends; the two later
    # stages' sends are a worker's job each
    assert len(calls) == RESPONDERS
    assert sorted(firsts[call.id] >= 2 for call in calls) == [False] * 8 + [True] * 3
    assert len(await _unwritten_ranges(county, warning.id)) == 2
    assert warning.fanned_out_at == county.clock.now() and warning.fanout_lease_until is None

    # every range's job was enqueued: the worker writes and sends them all without a sweep
    await county.work()
    warning, calls, firsts = await _state(county, warning.id)
    _each_called_once_with_first_attempts(calls, firsts)
    assert await _unwritten_ranges(county, warning.id) == []
    assert max((await _firsts_by_channel(county, warning.id)).values()) == 1
    assert await county.queued_sends(warning.id) == 0
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
    await county.work()
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
    await county.work()
    _, calls, firsts = await _state(county, warning_id)
    _each_called_once_with_first_attempts(calls, firsts)


async def test_a_range_s_sends_are_written_once(county: County) -> None:  # noqa: F811
    warning_id = int((await county.post(cap("STAGED-6")))["id"])
    ranges = await _unwritten_ranges(county, warning_id)
    written = await asyncio.gather(
        *(write_first_sends(county.runtime, range_id) for range_id in ranges * 2)
    )
    assert sorted(written)[:2] == [0, 0] and all(n >= 8 for n in sorted(written)[2:])
    assert await write_first_sends(county.runtime, ranges[0]) == 0
    assert max((await _firsts_by_channel(county, warning_id)).values()) == 1
    await county.work()
    _, calls, firsts = await _state(county, warning_id)
    _each_called_once_with_first_attempts(calls, firsts)


async def test_statistics_are_refreshed_once_every_range_is_written(
    county: County,  # noqa: F811
) -> None:
    warning_id = int((await county.post(cap("STAGED-10")))["id"])
    await county.runtime.queue.pool.flushdb()
    statistics_job = job_key_prefix + REFRESH_STATISTICS
    first, last = await _unwritten_ranges(county, warning_id)
    await write_first_sends(county.runtime, first)
    assert not await county.runtime.queue.pool.exists(statistics_job)
    await write_first_sends(county.runtime, last)
    assert await county.runtime.queue.pool.exists(statistics_job)


async def test_a_lost_range_job_is_enqueued_again(county: County) -> None:  # noqa: F811
    warning_id = int((await county.post(cap("STAGED-7")))["id"])
    await county.runtime.queue.pool.flushdb()  # Redis lost every job
    # within `requeue_after_s` (60 s) the job is trusted to be queued
    await county.at(0.5)
    assert len(await _unwritten_ranges(county, warning_id)) == 2
    await county.at(1)
    assert await _unwritten_ranges(county, warning_id) == []
    _, calls, firsts = await _state(county, warning_id)
    _each_called_once_with_first_attempts(calls, firsts)


async def test_calls_awaiting_their_sends_are_not_undeliverable(
    county: County,  # noqa: F811
) -> None:
    warning_id = int((await county.post(cap("STAGED-8")))["id"])
    await county.runtime.queue.pool.flushdb()  # the range jobs are lost
    report = await county.at(0.5, work=False)
    assert report.undeliverable == 0
    _, calls, _ = await _state(county, warning_id)
    assert {call.escalation_step for call in calls} == {0}
    await county.at(1)  # the jobs are enqueued again and write the sends
    _, calls, firsts = await _state(county, warning_id)
    _each_called_once_with_first_attempts(calls, firsts)
    assert {call.escalation_step for call in calls} == {0}


async def test_a_warning_cancelled_before_its_sends_are_written_gets_none(
    county: County,  # noqa: F811
) -> None:
    warning_id = int((await county.post(cap("STAGED-9")))["id"])
    await county.runtime.queue.pool.flushdb()  # the range jobs are lost
    await county.cancel("STAGED-9")
    await county.at(2)
    assert await _unwritten_ranges(county, warning_id) == []
    _, calls, firsts = await _state(county, warning_id)
    assert {call.state for call in calls} == {CallState.CANCELLED}
    # only the first stage, written with the warning, has sends
    sent = sorted(call.id for call in calls if firsts[call.id])
    assert sent == sorted(call.id for call in calls)[:3]


async def test_a_stage_goes_on_beside_a_range_job_and_a_cancel_waits_for_both(
    county: County,  # noqa: F811
    writer_dies: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job writing a range's sends holds its warning's lock while it writes; the next
    stage's calls must not wait for it (each stage waiting on the jobs in flight held the
    202 up for seconds), but a Cancel must, so that it cancels the sends the job writes."""
    if county.runtime.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    runtime = county.runtime
    entered, release = asyncio.Event(), asyncio.Event()
    real_first_attempts = fanout_stages.first_attempts

    async def held_first_attempts(*args: Any, **kwargs: Any) -> list[int]:
        entered.set()
        await release.wait()
        return await real_first_attempts(*args, **kwargs)

    monkeypatch.setattr(fanout_stages, "first_attempts", held_first_attempts)
    warning_id = int((await county.post(cap("STAGED-11")))["id"])
    async with runtime.db.sessions() as session:
        pending, _ = await fanout_stages._missing_calls(runtime, session, warning_id)
    range_id, _ = await fanout_stages._write_stage(runtime, warning_id, pending[:4], last=False)
    assert range_id is not None
    job = asyncio.create_task(write_first_sends(runtime, range_id))
    await entered.wait()  # the job has taken its range and its warning's lock

    stage = asyncio.create_task(
        fanout_stages._write_stage(runtime, warning_id, pending[4:], last=True)
    )
    waiter = asyncio.create_task(until_a_lock_is_awaited(runtime, "the stage"))
    done, _ = await asyncio.wait({stage, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    assert stage in done, "the stage waited for the range's job"
    assert (await stage)[1] and not job.done()

    cancel = asyncio.create_task(county.cancel("STAGED-11"))
    await until_a_lock_is_awaited(runtime, "the cancel")
    assert not cancel.done()
    release.set()
    assert await job >= 4 * 2  # sms and voice at least, still queued when written
    await cancel

    calls = (await _state(county, warning_id))[1]
    assert len(calls) == RESPONDERS
    assert {call.state for call in calls} == {CallState.CANCELLED}
    assert await county.queued_sends(warning_id) == 0
