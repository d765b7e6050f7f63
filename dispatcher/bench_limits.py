"""What the machine can do at all, measured beside the benchmark on the same back ends.

Two ceilings: how fast arq runs N jobs that do nothing (enqueue included), and how fast
the database takes N plain rows in bulk. The benchmark's figures read as a ratio to these.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from arq import Worker
from arq.worker import func
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert

from dispatcher.db import Database
from dispatcher.queue import Queue

NOOP_QUEUE = "jiaoying:bench-noop"
BATCH = 5000


async def noop_job(ctx: dict[str, Any], index: int) -> None:
    return None


async def arq_noop_rate(
    queue: Queue, jobs: int, workers: int, progress: Callable[[int], None] | None = None
) -> dict[str, float]:
    """Jobs a second for `jobs` no-op arq jobs: enqueued one by one, run by `workers`."""
    pool = queue.pool
    await pool.delete(NOOP_QUEUE)
    started = time.perf_counter()
    for index in range(jobs):
        await pool.enqueue_job("noop_job", index, _queue_name=NOOP_QUEUE)
        if progress is not None and index % 1000 == 0:
            progress(index)
    enqueued = time.perf_counter()
    runners = [
        Worker(
            functions=[func(noop_job, name="noop_job")],
            redis_pool=pool,
            queue_name=NOOP_QUEUE,
            burst=True,
            poll_delay=0.01,
            keep_result=0,
            handle_signals=False,
        )
        for _ in range(workers)
    ]
    await asyncio.gather(*(runner.async_run() for runner in runners))
    finished = time.perf_counter()
    return {
        "arq_enqueue_per_s": round(jobs / max(enqueued - started, 1e-9), 1),
        "arq_noop_jobs_per_s": round(jobs / max(finished - started, 1e-9), 1),
    }


async def insert_rate(db: Database, rows: int) -> float:
    """Rows a second for `rows` attempt-like rows inserted in bulk into a scratch table."""
    table = Table(
        "bench_scratch_rows",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("warning_id", Integer, nullable=False),
        Column("responder_id", Integer, nullable=False),
        Column("channel", String(16), nullable=False),
        Column("address", String(64), nullable=False),
        Column("status", String(16), nullable=False),
        Column("due_at", DateTime, nullable=False),
    )
    async with db.engine.begin() as connection:
        await connection.run_sync(table.drop, checkfirst=True)
        await connection.run_sync(table.create)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        started = time.perf_counter()
        async with db.engine.begin() as connection:
            for start in range(0, rows, BATCH):
                batch = [
                    {
                        "warning_id": 1,
                        "responder_id": i,
                        "channel": "sms",
                        "address": f"+86139{i:08d}",
                        "status": "queued",
                        "due_at": now,
                    }
                    for i in range(start, min(rows, start + BATCH))
                ]
                await connection.execute(insert(table), batch)
        elapsed = time.perf_counter() - started
    finally:
        async with db.engine.begin() as connection:
            await connection.run_sync(table.drop, checkfirst=True)
    return round(rows / max(elapsed, 1e-9), 1)
