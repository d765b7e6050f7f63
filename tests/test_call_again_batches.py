"""A big "call again" step's sends are written by workers: the sweep moves every ladder
on and records the sends owed, a job per warning writes them exactly once, skipping
whoever answered meanwhile and every call of a warning lifted meanwhile; a lost job is
enqueued again, and calls still owed their sends are not taken for undeliverable.

The county's 11 silent people stand in for a chunk of thousands: groups of more than 2
calls go to workers here (`WRITE_AT_ONCE`), as groups of more than 200 do for real.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import select, update

from dispatcher import call_again
from dispatcher.call_again import write_call_again
from dispatcher.models import Attempt, Call, CallAgainBatch
from dispatcher.vocabulary import AttemptStatus
from tests.scenario import County, county  # noqa: F401  (fixture)

RESPONDERS = 11


@pytest.fixture(autouse=True)
def small_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(call_again, "WRITE_AT_ONCE", 2)


async def _silent_past_the_first_step(county: County, identifier: str) -> int:  # noqa: F811
    """A red warning whose first sends went out; the sweep at 5 minutes (voice and sms
    again, red's first step) has run and its workers have not."""
    warning_id = await county.warn(identifier)
    await county.work()
    report = await county.at(5, work=False)
    assert report.steps == RESPONDERS
    return warning_id


async def _batches(county: County, warning_id: int) -> list[CallAgainBatch]:  # noqa: F811
    async with county.runtime.db.sessions() as session:
        return list(
            await session.scalars(
                select(CallAgainBatch)
                .where(CallAgainBatch.warning_id == warning_id)
                .order_by(CallAgainBatch.id)
            )
        )


async def _second_tries(county: County, warning_id: int) -> Counter[tuple[int, str]]:  # noqa: F811
    """(call id, channel) of each second try, counted."""
    async with county.runtime.db.sessions() as session:
        rows = await session.execute(
            select(Attempt.call_id, Attempt.channel).where(
                Attempt.warning_id == warning_id,
                Attempt.purpose == "call",
                Attempt.try_number == 2,
            )
        )
        return Counter((call_id, channel) for call_id, channel in rows)


async def test_a_big_step_s_sends_are_written_by_a_worker(county: County) -> None:  # noqa: F811
    warning_id = await _silent_past_the_first_step(county, "AGAIN-1")
    # the sweep moved every ladder on and owes the sends: none written yet
    (batch,) = await _batches(county, warning_id)
    assert batch.written_at is None and batch.try_number == 2
    assert await _second_tries(county, warning_id) == Counter()
    calls = await county.calls(warning_id)
    assert {call.escalation_step for call in calls.values()} == {1}
    assert {call.state for call in calls.values()} == {"escalated"}

    # its job was enqueued as the chunk committed: the worker writes and sends them
    await county.work()
    (batch,) = await _batches(county, warning_id)
    assert batch.written_at == county.clock.now()
    tries = await _second_tries(county, warning_id)
    assert tries == Counter(
        {(call.id, channel): 1 for call in calls.values() for channel in ("voice", "sms")}
    )
    async with county.runtime.db.sessions() as session:
        statuses = set(
            await session.scalars(
                select(Attempt.status).where(
                    Attempt.warning_id == warning_id, Attempt.try_number == 2
                )
            )
        )
    # handed to the simulated provider: delivered texts, robocalls nobody picked up
    assert statuses == {AttemptStatus.DELIVERED, AttemptStatus.NO_ANSWER}
    # each call's audit says what was done, once
    for call in calls.values():
        assert await county.steps(call.id) == ["call_again"]


async def test_a_batch_s_sends_are_written_once(county: County) -> None:  # noqa: F811
    warning_id = await _silent_past_the_first_step(county, "AGAIN-2")
    (batch,) = await _batches(county, warning_id)
    written = await asyncio.gather(
        write_call_again(county.runtime, batch.id), write_call_again(county.runtime, batch.id)
    )
    assert sorted(written) == [0, 2 * RESPONDERS]
    assert await write_call_again(county.runtime, batch.id) == 0
    assert set((await _second_tries(county, warning_id)).values()) == {1}


async def test_who_answers_before_the_batch_is_written_is_not_called_again(
    county: County,  # noqa: F811
) -> None:
    warning_id = await _silent_past_the_first_step(county, "AGAIN-3")
    await county.text("a1", "1")
    await county.work()
    calls = await county.calls(warning_id)
    assert calls["a1"].state == "answered"
    tries = await _second_tries(county, warning_id)
    assert {call_id for call_id, _ in tries} == {
        call.id for who, call in calls.items() if who != "a1"
    }


async def test_a_warning_lifted_before_the_batch_is_written_gets_none(
    county: County,  # noqa: F811
) -> None:
    warning_id = await _silent_past_the_first_step(county, "AGAIN-4")
    await county.cancel("AGAIN-4")
    await county.work()
    assert await _second_tries(county, warning_id) == Counter()
    (batch,) = await _batches(county, warning_id)
    assert batch.written_at is not None  # done with: the sweep will not enqueue it again


async def test_a_lost_batch_job_is_enqueued_again(county: County) -> None:  # noqa: F811
    warning_id = await _silent_past_the_first_step(county, "AGAIN-5")
    await county.runtime.queue.pool.flushdb()  # Redis lost every job
    # within `requeue_after_s` (60 s) the job is trusted to be queued
    await county.at(0.5)
    assert (await _batches(county, warning_id))[0].written_at is None
    report = await county.at(1)
    assert report.requeued >= 1
    assert (await _batches(county, warning_id))[0].written_at is not None
    assert set((await _second_tries(county, warning_id)).values()) == {1}
    assert len(await _second_tries(county, warning_id)) == 2 * RESPONDERS


async def test_calls_owed_their_sends_are_not_undeliverable(county: County) -> None:  # noqa: F811
    warning_id = await _silent_past_the_first_step(county, "AGAIN-6")
    await county.runtime.queue.pool.flushdb()  # the batch job is lost
    # every first send fails after all: the calls' only sends are the ones owed
    async with county.runtime.db.transaction() as session:
        await session.execute(
            update(Attempt)
            .where(Attempt.warning_id == warning_id, Attempt.purpose == "call")
            .values(status=AttemptStatus.FAILED)
        )
    report = await county.at(0.5, work=False)
    assert report.undeliverable == 0
    async with county.runtime.db.sessions() as session:
        steps = set(
            await session.scalars(select(Call.escalation_step).where(Call.warning_id == warning_id))
        )
    assert steps == {1}
    await county.at(1)  # the job is enqueued again and writes the sends
    assert len(await _second_tries(county, warning_id)) == 2 * RESPONDERS
    assert (await county.at(0.5)).undeliverable == 0
