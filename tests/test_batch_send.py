"""The batch send path: one request and one record per group, few deferred jobs, the
circuit's trial kept to one message, and callbacks that outrun their batch's record."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.worker import Retry
from sqlalchemy import select

from channels.base import Message, SendError, SendResult
from dispatcher.app import create_app
from dispatcher.batch_send import Accepted, record_accepted
from dispatcher.clock import ManualClock
from dispatcher.config import Settings
from dispatcher.models import Attempt, Call
from dispatcher.queue import DELIVER_CALLBACK, SEND_ATTEMPTS
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.sending import build_message, claim_attempts
from dispatcher.worker import deliver_callback_job, run_until_idle, send_attempts_job
from tests.conftest import Backend, make_settings
from tests.test_send_discipline import add_notices, all_attempts, drain
from tests.test_spine_e2e import cap, setup_directory, signed
from tests.twilio_world import twilio_world

# 上坪村 and 下洞村: a1, a2, b1, b2 (t1 leads the township, not a village)
VILLAGES = ["441799100001", "441799100002"]


def answering_settings(backend: Backend, answer_rate: float) -> Settings:
    simulated = {"delivery_rate": 1.0, "answer_rate": answer_rate, "help_rate": 0.0}
    zero_delay = {"min_delay_s": 0, "max_delay_s": 0, "delivery_receipts": False}
    return make_settings(backend, providers={"simulated": simulated | zero_delay})


async def post_warning(runtime: Runtime, clock: ManualClock, identifier: str) -> int:
    body = cap(identifier, VILLAGES)
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/api/v1/warnings", content=body, headers=signed(body, clock))
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


async def attempts_of(runtime: Runtime, warning_id: int) -> list[Attempt]:
    async with runtime.db.sessions() as session:
        return list(
            await session.scalars(
                select(Attempt).where(Attempt.warning_id == warning_id).order_by(Attempt.id)
            )
        )


async def calls_of(runtime: Runtime, warning_id: int) -> list[Call]:
    async with runtime.db.sessions() as session:
        return list(
            await session.scalars(
                select(Call).where(Call.warning_id == warning_id).order_by(Call.id)
            )
        )


def counts(outcome: str) -> dict[str, int]:
    """A send job's outcome ("sent=3 skipped=0") as a dict."""
    return {key: int(value) for key, value in (part.split("=") for part in outcome.split())}


def count_requests(runtime: Runtime, channel: str) -> dict[str, list[int]]:
    """Wrap the simulated provider of `channel` to note each request's size."""
    provider = runtime.providers.get(channel, "simulated")
    assert provider is not None
    seen: dict[str, list[int]] = {"send": [], "send_many": []}
    send, send_many = provider.send, provider.send_many

    async def counted_send(message: Message) -> SendResult:
        seen["send"].append(1)
        return await send(message)

    async def counted_many(messages: Sequence[Message]) -> list[SendResult | SendError]:
        seen["send_many"].append(len(messages))
        return await send_many(messages)

    provider.send, provider.send_many = counted_send, counted_many  # type: ignore[method-assign]
    return seen


async def test_a_batch_goes_out_in_one_request_per_channel_and_starts_the_clocks(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    await setup_directory(runtime, tmp_path)
    requests = {channel: count_requests(runtime, channel) for channel in ("sms", "voice")}
    warning_id = await post_warning(runtime, clock, "BATCH-1")
    ids = [a.id for a in await attempts_of(runtime, warning_id)]

    outcome = await send_attempts_job({"runtime": runtime}, ids)

    rows = await attempts_of(runtime, warning_id)
    assert {(a.status, a.provider) for a in rows} == {("sent", "simulated")}
    assert counts(outcome) == {"sent": len(rows)}
    assert all(a.provider_message_id and a.body and a.sent_at == clock.now() for a in rows)
    for channel, seen in requests.items():
        sends = sum(a.channel == channel for a in rows)
        assert seen == {"send": [], "send_many": [sends]}, channel
    calls = await calls_of(runtime, warning_id)
    gap = timedelta(minutes=runtime.settings.policy_for("red").ladder[0].at_min)
    assert {(c.state, c.delivered_at, c.next_step_at) for c in calls} == {
        ("calling", clock.now(), clock.now() + gap)
    }


async def test_a_callback_before_its_batch_is_recorded_waits_and_then_counts(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    runtime = await open_runtime(
        answering_settings(backend, 1.0), clock=clock, migrate=False, redis=backend.redis_handle
    )
    try:
        await setup_directory(runtime, tmp_path)
        warning_id = await post_warning(runtime, clock, "BATCH-2")
        voice = [a.id for a in await attempts_of(runtime, warning_id) if a.channel == "voice"]
        await runtime.queue.pool.delete("jiaoying:queue")  # the sends are made by hand here
        claims = await claim_attempts(runtime, voice)
        provider = runtime.providers.get("voice", "simulated")
        assert provider is not None
        messages = [build_message(runtime, claim, provider) for claim in claims]
        results = await provider.send_many(messages)

        # everyone pressed 1 at once: the keypresses are queued before the sends are recorded
        callbacks = [job for job in await runtime.queue.pool.queued_jobs()]
        assert [job.function for job in callbacks] == [DELIVER_CALLBACK] * len(claims)
        for job in callbacks:
            with pytest.raises(Retry):
                await deliver_callback_job({"runtime": runtime, "job_try": 1}, *job.args)
        assert {c.state for c in await calls_of(runtime, warning_id)} == {"calling"}

        accepted = []
        for claim, message, result in zip(claims, messages, results, strict=True):
            assert isinstance(result, SendResult)
            accepted.append(
                Accepted(claim, "simulated", message.text, result.provider_message_id, clock.now())
            )
        await record_accepted(runtime, accepted)
        for job in callbacks:
            await deliver_callback_job({"runtime": runtime, "job_try": 2}, *job.args)

        calls = await calls_of(runtime, warning_id)
        assert {c.state for c in calls} == {"answered"}
        # the clock started when the sends were recorded; the answers then stopped it
        assert all(c.delivered_at == clock.now() and c.next_step_at is None for c in calls)
        voice_rows = [a for a in await attempts_of(runtime, warning_id) if a.channel == "voice"]
        assert {a.status for a in voice_rows} == {"sent"}
    finally:
        await runtime.aclose()


async def test_an_answer_before_the_record_leaves_the_clock_stopped(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    await setup_directory(runtime, tmp_path)
    warning_id = await post_warning(runtime, clock, "BATCH-3")
    sms = [a for a in await attempts_of(runtime, warning_id) if a.channel == "sms"]
    claims = await claim_attempts(runtime, [a.id for a in sms])
    provider = runtime.providers.get("sms", "simulated")
    assert provider is not None
    messages = [build_message(runtime, claim, provider) for claim in claims]
    results = await provider.send_many(messages)

    # one person texts "1" back before the batch is recorded (matched by number, not id)
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        reply = {"From": sms[0].address, "Body": "1"}
        assert (await client.post("/hooks/sms/simulated", data=reply)).status_code == 200
    accepted = [
        Accepted(claim, "simulated", message.text, result.provider_message_id, clock.now())
        for claim, message, result in zip(claims, messages, results, strict=True)
        if isinstance(result, SendResult)
    ]
    await record_accepted(runtime, accepted)

    calls = {c.id: c for c in await calls_of(runtime, warning_id)}
    answered = calls.pop(sms[0].call_id)  # type: ignore[arg-type]
    assert (answered.state, answered.next_step_at) == ("answered", None)
    assert answered.delivered_at == clock.now()
    assert all(c.state == "calling" and c.next_step_at is not None for c in calls.values())


async def test_sends_ahead_of_the_rate_go_back_as_a_few_deferred_jobs(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with twilio_world(backend, clock, tmp_path, twilio={"sms_rate_per_s": 16}) as world:
        runtime = world.runtime
        ids = await add_notices(runtime, [f"+141555503{i:02d}" for i in range(30)])
        start = clock.now()

        outcome = await send_attempts_job({"runtime": runtime}, ids)

        # slots 62.5 ms apart: one is due now, the rest wait in jobs of 200 ms of slots
        assert counts(outcome) == {"sent": 1, "deferred": 29}
        jobs = await runtime.queue.pool.queued_jobs()
        assert all(job.function == SEND_ATTEMPTS for job in jobs)
        assert sorted(i for job in jobs for i in job.args[0]) == ids[1:]
        assert len(jobs) == 8
        rows = await all_attempts(runtime)
        waiting = [a for a in rows if a.status == "queued"]
        assert [a.due_at for a in waiting] == [
            start + timedelta(seconds=0.0625 * k) for k in range(1, 30)
        ]
        assert {(a.provider, a.slot_at == a.due_at) for a in waiting} == {("twilio", True)}

        # each job comes back at once by the manual clock, finds its sends not yet due
        await run_until_idle(runtime)
        assert sum(a.status == "sent" for a in await all_attempts(runtime)) == 1
        await drain(world, clock, seconds=2)
        assert {a.status for a in await all_attempts(runtime)} == {"sent"}
        assert world.fake.api_requests == 30


async def test_a_half_open_circuit_gets_one_message_of_a_batch_as_its_trial(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with twilio_world(
        backend,
        clock,
        tmp_path,
        sms=["twilio", "simulated"],
        failover={"failures_to_open": 1, "open_s": 60},
        worker={"retry_base_s": 10},
    ) as world:
        runtime, fake = world.runtime, world.fake
        fake.failing = (500, 20500)
        await runtime.queue.enqueue_attempts(await add_notices(runtime, ["+14155550101"]))
        await run_until_idle(runtime)
        assert await runtime.breakers.state("sms", "twilio", clock.now()) == "open"
        clock.advance(seconds=61)
        requests_before = fake.api_requests

        numbers = [f"+1415555020{i}" for i in range(4)]
        ids = await add_notices(runtime, numbers)
        await send_attempts_job({"runtime": runtime}, ids)

        rows: dict[str, Any] = {a.address: a for a in await all_attempts(runtime) if a.id in ids}
        # the trial failed and opened the circuit again; the rest went to the next provider
        assert fake.api_requests == requests_before + 1
        assert (rows[numbers[0]].provider, rows[numbers[0]].status) == ("twilio", "failed")
        assert {(rows[n].provider, rows[n].status) for n in numbers[1:]} == {("simulated", "sent")}
        assert await runtime.breakers.state("sms", "twilio", clock.now()) == "open"


async def test_reserve_many_hands_out_the_slots_reserve_would(
    runtime: Runtime, clock: ManualClock
) -> None:
    now, limiter = clock.now(), runtime.limiter
    first = await limiter.reserve("sms", "twilio", 4, now)
    many = await limiter.reserve_many("sms", "twilio", 4, now, 3)
    after = await limiter.reserve("sms", "twilio", 4, now)
    assert [first, *many, after] == [now + timedelta(seconds=0.25 * k) for k in range(5)]
    assert await limiter.reserve_many("sms", "twilio", 0, now, 2) == [now, now]


async def test_simulated_answers_are_released_once_their_batch_is_recorded(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    runtime = await open_runtime(
        answering_settings(backend, 1.0), clock=clock, migrate=False, redis=backend.redis_handle
    )
    try:
        await setup_directory(runtime, tmp_path)
        warning_id = await post_warning(runtime, clock, "BATCH-4")
        voice = [a.id for a in await attempts_of(runtime, warning_id) if a.channel == "voice"]
        await runtime.queue.pool.delete("jiaoying:queue")
        # what the database says of each keypress's send when the keypress is enqueued
        status_then: list[str | None] = []
        enqueue = runtime.queue.enqueue_callbacks

        async def noting(callbacks: list[tuple[str, str, dict[str, Any], float]]) -> None:
            async with runtime.db.sessions() as session:
                for _, _, request, _ in callbacks:
                    status_then.append(
                        await session.scalar(
                            select(Attempt.status).where(
                                Attempt.provider_message_id == request["form"]["CallSid"]
                            )
                        )
                    )
            await enqueue(callbacks)

        runtime.queue.enqueue_callbacks = noting  # type: ignore[method-assign,assignment]

        assert counts(await send_attempts_job({"runtime": runtime}, voice)) == {"sent": len(voice)}

        assert status_then == ["sent"] * len(voice)
        # so every keypress finds its send on the first try
        callbacks = await runtime.queue.pool.queued_jobs()
        assert [job.function for job in callbacks] == [DELIVER_CALLBACK] * len(voice)
        for job in callbacks:
            await deliver_callback_job({"runtime": runtime, "job_try": 1}, *job.args)
        assert {c.state for c in await calls_of(runtime, warning_id)} == {"answered"}
    finally:
        await runtime.aclose()
