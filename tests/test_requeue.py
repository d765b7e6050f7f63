"""The sweep's requeue: sends whose job may have been lost go to the queue again.

A send is written with `enqueued_at` set when its writer enqueues it after commit (first
sends, thank-you texts): the sweep leaves it alone for `requeue_after_s`, then enqueues
it again if it is still queued. The query reads only queued sends not enqueued lately,
through an index that holds nothing else.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import bindparam, text

from dispatcher.db import UTCDateTime
from dispatcher.escalation import unqueued_sends
from tests.scenario import County, county  # noqa: F401  (fixture)


async def test_first_sends_are_requeued_only_once_their_job_may_be_lost(
    county: County,  # noqa: F811
) -> None:
    warning_id = await county.warn("REQUEUE")
    queued = await county.queued_sends(warning_id)
    assert queued >= 2 * 11  # sms and voice to each, at least
    # enqueued by the webhook: a sweep within `requeue_after_s` (60 s) sends no more jobs
    assert (await county.at(0.5, work=False)).requeued == 0
    await county.runtime.queue.pool.flushdb()  # Redis lost every job
    assert (await county.at(0.6, work=False)).requeued == queued
    await county.work()
    assert await county.queued_sends(warning_id) == 0


async def test_the_requeue_reads_only_sends_not_enqueued_lately(
    county: County,  # noqa: F811
) -> None:
    """With 20,000 queued sends enqueued a moment ago, the query, prepared as the driver
    prepares it, goes through `ix_attempts_requeue`, which has only queued sends in order
    of when they were enqueued; by (status, due_at) it read all 20,000 to requeue none."""
    if county.runtime.db.is_sqlite:
        pytest.skip("a PostgreSQL plan")
    warning_id = await county.warn("PLANNED")
    now = county.clock.now()
    # a big warning's sends: 20,000 sent, 20,000 queued and enqueued a moment ago
    async with county.runtime.db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO attempts (warning_id, purpose, channel, address, status,"
                " try_number, due_at, enqueued_at, updated_at)"
                " SELECT :warning, 'call', 'sms', '+8613900000000',"
                " CASE WHEN n % 2 = 0 THEN 'sent' ELSE 'queued' END, 1, :now, :now, :now"
                " FROM generate_series(1, 40000) AS n"
            ).bindparams(bindparam("now", now, type_=UTCDateTime()), warning=warning_id)
        )
    statement = unqueued_sends(now, now - timedelta(minutes=1), 2000).compile(
        dialect=county.runtime.db.engine.dialect, compile_kwargs={"render_postcompile": True}
    )
    values = [statement.params[name] for name in statement.positiontup or []]
    engine = county.runtime.db.engine.execution_options(isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text("ANALYZE attempts"))
        await connection.exec_driver_sql(f"PREPARE unqueued AS {statement}")
        arguments = ", ".join(
            f"'{value.isoformat(sep=' ')}'" if isinstance(value, datetime) else str(value)
            for value in values
        )
        plan = await connection.scalar(text(f"EXPLAIN (FORMAT JSON) EXECUTE unqueued({arguments})"))
        await connection.exec_driver_sql("DEALLOCATE unqueued")
    plan_text = plan if isinstance(plan, str) else json.dumps(plan)
    assert "ix_attempts_requeue" in plan_text, plan_text
