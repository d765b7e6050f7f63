"""The arq worker: send jobs, simulated callbacks, and on cron the escalation sweep and
the compaction of the figures' counters.

A send that must wait (a rate-limit slot ahead, every circuit open, a broadcast's
backoff) raises `Deferred`; the job turns it into arq's `Retry(defer=...)`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from arq import Worker, cron
from arq.worker import Retry, func
from sqlalchemy.exc import SQLAlchemyError

from channels.base import CallbackRequest
from dispatcher.batch_send import send_batch
from dispatcher.broadcasting import send_broadcast
from dispatcher.call_again import write_call_again
from dispatcher.counters import compact_added
from dispatcher.escalation import sweep
from dispatcher.fanout_stages import write_first_sends
from dispatcher.inbound import UnmatchedCallback, process_callback
from dispatcher.queue import QUEUE_NAME
from dispatcher.retries import Deferred
from dispatcher.runtime import Runtime
from dispatcher.sending import claim_attempts, send_attempt
from dispatcher.statistics import refresh_after_compaction, refresh_statistics

log = logging.getLogger(__name__)
# A deferred send comes back as the same job; past this many tries arq gives up on the
# job, and the sweep enqueues the row again when it is due.
SEND_MAX_TRIES = 50
COMPACT_INTERVAL_S = 10


async def send_attempt_job(ctx: dict[str, Any], attempt_id: int) -> str:
    try:
        return await send_attempt(ctx["runtime"], attempt_id)
    except Deferred as deferred:
        raise Retry(defer=deferred.real_delay_s) from None


async def send_attempts_job(ctx: dict[str, Any], attempt_ids: list[int]) -> str:
    """Claim a batch of attempts in one transaction, then send them as a batch
    (`dispatcher.batch_send`).

    Attempts that must wait go back to the queue in a few deferred jobs, due when their
    slots come; a group that fails unexpectedly stays `sending` until its lease runs out
    and the sweep takes it up, and does not hold up the rest of the batch. If the batch
    claim itself fails (a deadlock with an answer being recorded), each attempt is claimed
    and sent on its own.
    """
    runtime: Runtime = ctx["runtime"]
    outcomes: Counter[str] = Counter()
    try:
        claims = await claim_attempts(runtime, attempt_ids)
    except SQLAlchemyError:
        log.warning("batch claim failed; claiming %d attempts one by one", len(attempt_ids))
        for attempt_id in attempt_ids:
            outcomes[await _send_one(runtime, attempt_id)] += 1
    else:
        outcomes["skipped"] += len(attempt_ids) - len(claims)
        outcomes.update(await send_batch(runtime, claims))
    return " ".join(f"{key}={count}" for key, count in sorted(outcomes.items()) if count)


async def _send_one(runtime: Runtime, attempt_id: int) -> str:
    try:
        return await send_attempt(runtime, attempt_id)
    except Deferred as deferred:
        await runtime.queue.enqueue_attempt(attempt_id, deferred.real_delay_s)
        return "deferred"
    except Exception:
        log.exception("attempt %s failed to send; the sweep will take it up", attempt_id)
        return "error"


async def write_first_sends_job(ctx: dict[str, Any], range_id: int) -> int:
    return await write_first_sends(ctx["runtime"], range_id)


async def write_call_again_job(ctx: dict[str, Any], batch_id: int) -> int:
    return await write_call_again(ctx["runtime"], batch_id)


async def send_broadcast_job(ctx: dict[str, Any], broadcast_id: int) -> str:
    try:
        return await send_broadcast(ctx["runtime"], broadcast_id)
    except Deferred as deferred:
        raise Retry(defer=deferred.real_delay_s) from None


# 0.2 s doubling: the last look comes about 25 s after the first.
CALLBACK_MAX_TRIES = 8


async def deliver_callback_job(
    ctx: dict[str, Any], channel: str, provider: str, request: dict[str, Any]
) -> None:
    try:
        await process_callback(
            ctx["runtime"], channel, provider, CallbackRequest(**request), raise_unmatched=True
        )
    except UnmatchedCallback:
        # The send that this reports on may not be committed yet (a busy worker, a batch
        # still being recorded); look again, backing off, for about half a minute.
        job_try = ctx.get("job_try", 1)
        if job_try < CALLBACK_MAX_TRIES:
            raise Retry(defer=0.2 * 2 ** (job_try - 1)) from None
        log.error(
            "%s callback from %s matches no send after %d tries; dropped: %s",
            channel,
            provider,
            job_try,
            sorted(request.get("form") or {}),
        )


async def refresh_statistics_job(ctx: dict[str, Any]) -> bool:
    return await refresh_statistics(ctx["runtime"].db)


async def sweep_job(ctx: dict[str, Any]) -> None:
    await sweep(ctx["runtime"])


async def compact_counters_job(ctx: dict[str, Any]) -> int:
    """Compact the counters of warnings that changed a lot, then refresh the planner's
    statistics: thousands of calls just changed state (a burst of answers), and plans
    made for the old shape (all pending) walk every call to list the answered."""
    runtime: Runtime = ctx["runtime"]
    marks = ctx.setdefault("counter_marks", {})
    done = await compact_added(runtime.db, marks)
    if done:
        await refresh_after_compaction(runtime.db)
    return done


# How long a stopping worker waits for the jobs it is running before cancelling them.
STOP_GRACE_S = 10.0


async def run_until_stopped(worker: Worker) -> None:
    """Run `worker` until its task is cancelled, then give the jobs it is running
    `STOP_GRACE_S` to finish. Cancelling arq's `async_run` alone leaves its jobs running,
    and they failed against the queue the process closes next (a traceback per job at
    the end of `jiaoying demo`)."""
    try:
        await worker.async_run()
    finally:
        running = [task for task in worker.tasks.values() if not task.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=STOP_GRACE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)


def build_worker(runtime: Runtime, *, burst: bool = False, with_cron: bool = True) -> Worker:
    interval = runtime.settings.worker.sweep_interval_s
    cron_jobs = [
        cron(sweep_job, second=set(range(0, 60, interval)), run_at_startup=True),
        cron(compact_counters_job, second=set(range(5, 60, COMPACT_INTERVAL_S))),
    ]
    return Worker(
        functions=[
            func(send_attempt_job, name="send_attempt", max_tries=SEND_MAX_TRIES),
            func(send_attempts_job, name="send_attempts"),
            func(write_first_sends_job, name="write_first_sends"),
            func(write_call_again_job, name="write_call_again"),
            func(send_broadcast_job, name="send_broadcast", max_tries=SEND_MAX_TRIES),
            func(deliver_callback_job, name="deliver_callback", max_tries=CALLBACK_MAX_TRIES),
            func(refresh_statistics_job, name="refresh_statistics"),
        ],
        cron_jobs=cron_jobs if with_cron else [],
        redis_pool=runtime.queue.pool,
        queue_name=QUEUE_NAME,
        ctx={"runtime": runtime},
        burst=burst,
        # Cheap to ask Redis 20 times a second; a warning's first send waits no longer.
        poll_delay=0.05,
        max_jobs=runtime.settings.worker.max_jobs,
        keep_result=0,
        handle_signals=False,
    )


async def run_until_idle(runtime: Runtime, rounds: int = 20) -> int:
    """Run jobs until the queue is empty (tests and the demo's final check)."""
    done = 0
    for _ in range(rounds):
        if await runtime.queue.depth() == 0:
            break
        worker = build_worker(runtime, burst=True, with_cron=False)
        await worker.async_run()
        done += worker.jobs_complete
        if worker.jobs_failed:
            raise RuntimeError(f"{worker.jobs_failed} job(s) failed")
    return done
