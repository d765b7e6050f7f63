"""Sending discipline against the fake Twilio: failover, retries, rate limits.

Failover when Twilio starts answering 500s (the circuit opens, sends move to the next
provider, a trial closes it again); permanent errors are not retried and mark the
contact bad; transient ones back off exponentially, with jitter, up to a bound; two
workers share one rate limit through Redis.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from dispatcher.clock import ManualClock
from dispatcher.escalation import sweep
from dispatcher.fanout import new_attempt
from dispatcher.models import Attempt, Contact
from dispatcher.retries import Deferred
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.sending import send_attempt
from dispatcher.worker import run_until_idle
from tests.auth import sign_in
from tests.conftest import Backend
from tests.test_twilio_e2e import post_warning
from tests.twilio_world import World, twilio_world


async def add_notices(runtime: Runtime, addresses: list[str], text: str = "测试通知") -> list[int]:
    async with runtime.db.transaction() as session:
        rows = [
            new_attempt(
                call=None,
                warning_id=None,
                responder_id=None,
                purpose="notice",
                channel="sms",
                address=address,
                now=runtime.clock.now(),
                body=f"{text}{i}",
            )
            for i, address in enumerate(addresses)
        ]
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]


async def all_attempts(runtime: Runtime) -> list[Attempt]:
    async with runtime.db.sessions() as session:
        return list(await session.scalars(select(Attempt).order_by(Attempt.id)))


async def drain(world: World, clock: ManualClock, seconds: float = 0) -> None:
    clock.advance(seconds=seconds)
    await sweep(world.runtime)
    await run_until_idle(world.runtime)


async def test_failover_when_twilio_starts_returning_500s(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with twilio_world(
        backend,
        clock,
        tmp_path,
        sms=["twilio", "simulated"],
        failover={"failures_to_open": 2, "open_s": 60},
        worker={"max_jobs": 1, "retry_base_s": 10},
    ) as world:
        runtime, fake = world.runtime, world.fake
        await runtime.queue.enqueue_attempts(await add_notices(runtime, ["+14155550101"]))
        await run_until_idle(runtime)
        assert [(a.provider, a.status) for a in await all_attempts(runtime)] == [("twilio", "sent")]

        fake.failing = (500, 20500)
        numbers = [f"+1415555020{i}" for i in range(4)]
        await runtime.queue.enqueue_attempts(await add_notices(runtime, numbers))
        await run_until_idle(runtime)
        rows = (await all_attempts(runtime))[1:]
        # two 500s open the circuit; the rest, and the retry of the second, go to simulated
        failed = [a for a in rows if a.status == "failed"]
        assert [(a.provider, a.error_code, a.address) for a in failed] == [
            ("twilio", "20500", numbers[0]),
            ("twilio", "20500", numbers[1]),
        ]
        assert "500" in (failed[0].error_message or "")
        sent = {a.address: a for a in rows if a.status in ("sent", "delivered")}
        assert {a.provider for a in sent.values()} == {"simulated"}
        assert set(sent) == set(numbers[1:])
        assert sent[numbers[1]].try_number == 2
        assert await runtime.breakers.state("sms", "twilio", clock.now()) == "open"
        metrics = (await world.client.get("/metrics")).text
        assert (
            'jiaoying_provider_circuit_state{channel="sms",provider="twilio",state="open"} 1'
            in (metrics)
        )
        await sign_in(world.client, runtime)
        page = (await world.client.get("/dashboard")).text
        assert "twilio" in page and "熔断" in page

        # the first one's retry waits out its backoff, then fails over too
        await drain(world, clock, seconds=10)
        first = [a for a in await all_attempts(runtime) if a.address == numbers[0]]
        assert [(a.provider, a.status) for a in first][-1] == ("simulated", "delivered")

        # Twilio recovers; after open_s one trial goes to it and closes the circuit
        fake.failing = None
        clock.advance(seconds=61)
        assert await runtime.breakers.state("sms", "twilio", clock.now()) == "half_open"
        await runtime.queue.enqueue_attempts(await add_notices(runtime, ["+14155550299"]))
        await run_until_idle(runtime)
        assert (await all_attempts(runtime))[-1].provider == "twilio"
        assert await runtime.breakers.state("sms", "twilio", clock.now()) == "closed"


async def test_permanent_errors_are_not_retried(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with twilio_world(backend, clock, tmp_path) as world:
        world.fake.invalid_numbers = {"+14155550101"}  # 李四's number is not valid
        world.fake.unsubscribed = {"+8613900000011"}  # 张三 texted STOP
        await post_warning(world, clock)
        await run_until_idle(world.runtime)
        u1 = await world.attempts_of("u1")
        assert [(a.status, a.error_code) for a in u1["sms"]] == [("failed", "21211")]
        assert [(a.status, a.error_code) for a in u1["voice"]] == [("failed", "21211")]
        a1 = await world.attempts_of("a1")
        assert [(a.status, a.error_code) for a in a1["sms"]] == [("failed", "21610")]
        assert a1["voice"][0].status == "sent"
        async with world.runtime.db.sessions() as session:
            bad = set(await session.scalars(select(Contact.value).where(Contact.bad)))
        assert bad == {"+14155550101", "+8613900000011"}
        # 李四 cannot be reached on any channel: the sweep moves his ladder on at once
        await sweep(world.runtime)
        assert await world.undeliverable() == {"u1"}
        assert await world.runtime.breakers.state("sms", "twilio", clock.now()) == "closed"


async def test_transient_errors_back_off_with_jitter_up_to_a_bound(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with twilio_world(
        backend,
        clock,
        tmp_path,
        worker={"retry_base_s": 10, "retry_max_backoff_s": 15, "retry_max_tries": 3},
        failover={"failures_to_open": 100},
    ) as world:
        runtime = world.runtime
        world.fake.failing = (429, 20429)
        await runtime.queue.enqueue_attempts(await add_notices(runtime, ["+14155550101"]))
        await run_until_idle(runtime)
        world.fake.failing = (503, 20503)
        for wait in (10, 15):
            await drain(world, clock, seconds=wait)
        rows = await all_attempts(runtime)
        assert [(a.try_number, a.status, a.error_code) for a in rows] == [
            (1, "failed", "20429"),
            (2, "failed", "20503"),
            (3, "failed", "20503"),
        ]
        # backoff n: between half and all of min(15, 10 * 2^(n-1)) after the failure
        gaps = [(b.due_at - a.updated_at).total_seconds() for a, b in itertools.pairwise(rows)]
        assert 5 <= gaps[0] <= 10 and 7.5 <= gaps[1] <= 15
        assert world.fake.api_requests == 3
        # the bound: no fourth try however long we wait
        await drain(world, clock, seconds=3600)
        assert len(await all_attempts(runtime)) == 3

        # and a transient error that passes: the retry goes through
        world.fake.failing = None
        await runtime.queue.enqueue_attempts(await add_notices(runtime, ["+14155550102"]))
        world.fake.failing = (500, 20500)
        await run_until_idle(runtime)
        world.fake.failing = None
        await drain(world, clock, seconds=10)
        last = (await all_attempts(runtime))[-2:]
        assert [(a.try_number, a.status) for a in last] == [(1, "failed"), (2, "sent")]


async def test_rate_limit_is_shared_by_two_workers(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with twilio_world(backend, clock, tmp_path, twilio={"sms_rate_per_s": 4}) as world:
        first = world.runtime
        # a second worker process: its own engine, Redis connections, providers, HTTP
        second = await open_runtime(first.settings, clock=clock, migrate=False, redis=first.redis)
        sent_by = {"first": 0, "second": 0}

        def counter(name: str):  # type: ignore[no-untyped-def]
            async def count(request) -> None:  # type: ignore[no-untyped-def]
                sent_by[name] += 1

            return count

        first.http.event_hooks["request"].append(counter("first"))
        second.http.event_hooks["request"].append(counter("second"))
        try:
            start = clock.now()
            ids = await add_notices(first, [f"+1415555030{i}" for i in range(8)])

            async def both_workers() -> int:
                """Each worker tries every due attempt at once; how many went out."""
                results = await asyncio.gather(
                    *(
                        send_attempt(first if n % 2 else second, attempt_id)
                        for n, attempt_id in enumerate(ids)
                    ),
                    return_exceptions=True,
                )
                for result in results:
                    if isinstance(result, BaseException) and not isinstance(result, Deferred):
                        raise result
                return sum(result == "sent" for result in results)

            assert await both_workers() == 1
            for _ in range(7):
                clock.advance(seconds=0.25)
                assert await both_workers() == 1
            assert await both_workers() == 0
            rows = await all_attempts(first)
            assert sorted(a.sent_at for a in rows) == [
                start + timedelta(seconds=0.25 * k) for k in range(8)
            ]
            assert world.fake.api_requests == 8 and sent_by["first"] and sent_by["second"]

            # through the queue: deferred jobs come back without failing
            clock.advance(seconds=0.25)
            more = await add_notices(first, ["+14155550400", "+14155550401"])
            await first.queue.enqueue_attempts(more)
            await run_until_idle(first)
            statuses = [a.status for a in await all_attempts(first)][-2:]
            assert sorted(statuses) == ["queued", "sent"]
            await drain(world, clock, seconds=0.25)
            assert [a.status for a in await all_attempts(first)][-2:] == ["sent", "sent"]
        finally:
            await second.aclose()


async def test_filtered_message_goes_to_the_next_provider(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with twilio_world(backend, clock, tmp_path, sms=["twilio", "simulated"]) as world:
        world.fake.sms_fate = {"+14155550101": ("undelivered", "30007")}  # filtered as spam
        await world.runtime.queue.enqueue_attempts(
            await add_notices(world.runtime, ["+14155550101"])
        )
        await run_until_idle(world.runtime)
        await world.fake.progress()
        await run_until_idle(world.runtime)
        rows = await all_attempts(world.runtime)
        assert [(a.provider, a.status, a.error_code, a.skip_providers) for a in rows] == [
            ("twilio", "failed", "30007", None),
            ("simulated", "delivered", None, "twilio"),
        ]
        assert rows[1].body == rows[0].body
