"""Bulk writes on both back ends, the fan-out built on them, and enqueueing many jobs.

`dispatcher.bulk` gives many ids as one parameter, ids before the insert and COPY on
PostgreSQL; the fan-out uses them to pick each call's code before its row is written.
`Queue.enqueue_many` must keep arq's job format and its skip-if-queued rule.
"""

from __future__ import annotations

import pickle
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import deserialize_job
from sqlalchemy import func, select, text
from sqlalchemy.exc import StatementError

from dispatcher import counters, statistics
from dispatcher.bulk import id_in, insert_columns, insert_rows, reserve_ids
from dispatcher.clock import ManualClock
from dispatcher.codes import pick_code
from dispatcher.db import Database
from dispatcher.models import Attempt, AuditEvent, InboxMessage, Responder
from dispatcher.queue import QUEUE_NAME, SEND_ATTEMPT, SEND_ATTEMPTS, SEND_BATCH, Queue
from dispatcher.runtime import Runtime
from dispatcher.worker import compact_counters_job, run_until_idle
from tests.scenario import PHONE, County, county  # noqa: F401  (fixture)

INBOX_COLUMNS = ("id", "at", "phone", "text", "reason")


async def test_bulk_rows_ids_and_id_sets(database: Database) -> None:
    at = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
    beijing = (at + timedelta(hours=1)).astimezone(timezone(timedelta(hours=8)))
    async with database.transaction() as session:
        table = InboxMessage.__table__
        ids = await reserve_ids(session, table, 3)  # type: ignore[arg-type]
        assert len(set(ids)) == 3 and ids == sorted(ids)
        await insert_rows(
            session,
            table,  # type: ignore[arg-type]
            INBOX_COLUMNS,
            [
                (ids[0], at, "+861", "一", "unclear"),
                (ids[1], beijing, "+862", "二", "unclear"),
                (ids[2], at, "+863", "三", "unclear"),
            ],
        )
        # the rows are there in the same transaction, and new ids do not collide with them
        more = await reserve_ids(session, table, 2)  # type: ignore[arg-type]
        assert not set(more) & set(ids)
        assert await reserve_ids(session, table, 0) == []  # type: ignore[arg-type]
        stored = {m.id: m for m in await session.scalars(select(InboxMessage))}
    assert sorted(stored) == ids
    assert stored[ids[0]].at == at and stored[ids[0]].at.tzinfo is not None
    assert stored[ids[1]].at == beijing and stored[ids[1]].at.utcoffset() == timedelta(0)
    assert stored[ids[2]].text == "三"

    async with database.transaction() as session:
        # far more ids than either back end takes as bind parameters, as one parameter
        many = list(range(1, 40_001))
        found = await session.scalars(
            select(InboxMessage.id).where(id_in(session, InboxMessage.id, many))
        )
        assert sorted(found) == ids
        none = await session.scalar(
            select(func.count())
            .select_from(InboxMessage)
            .where(id_in(session, InboxMessage.id, []))
        )
        assert none == 0


async def test_bulk_columns_with_constants(database: Database) -> None:
    at = (datetime(2026, 7, 1, 2, 0, tzinfo=UTC)).astimezone(timezone(timedelta(hours=8)))
    shared = {"step": 1, "kind": "call_again"}
    table = AuditEvent.__table__
    async with database.transaction() as session:
        await insert_columns(
            session,
            table,  # type: ignore[arg-type]
            {
                "kind": ["a", "b", "c"],
                "warning_id": [None, None, None],
                "detail": [shared, shared, {"until": "明早", "told": None}],
            },
            {"at": at, "actor": "system"},
        )
        await insert_columns(session, table, {"kind": []}, {"at": at})  # type: ignore[arg-type]
    async with database.sessions() as session:
        rows = (await session.scalars(select(AuditEvent).order_by(AuditEvent.kind))).all()
    assert [(r.kind, r.actor, r.detail) for r in rows] == [
        ("a", "system", shared),
        ("b", "system", shared),
        ("c", "system", {"until": "明早", "told": None}),
    ]
    assert all(r.at == at and r.at.utcoffset() == timedelta(0) for r in rows)


async def test_bulk_insert_rolls_back_with_its_transaction(database: Database) -> None:
    at = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            ids = await reserve_ids(session, InboxMessage.__table__, 1)  # type: ignore[arg-type]
            await insert_rows(
                session,
                InboxMessage.__table__,  # type: ignore[arg-type]
                INBOX_COLUMNS,
                [(ids[0], at, "+861", "一", "unclear")],
            )
            raise RuntimeError("the warning's transaction fails after the bulk insert")
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(InboxMessage)) == 0


async def test_bulk_insert_refuses_a_naive_time(database: Database) -> None:
    with pytest.raises((ValueError, StatementError), match="naive"):
        async with database.transaction() as session:
            ids = await reserve_ids(session, InboxMessage.__table__, 1)  # type: ignore[arg-type]
            await insert_rows(
                session,
                InboxMessage.__table__,  # type: ignore[arg-type]
                INBOX_COLUMNS,
                [(ids[0], datetime(2026, 7, 1, 2, 0), "+861", "一", "unclear")],
            )


async def test_fan_out_codes_and_attempts(county: County, clock: ManualClock) -> None:  # noqa: F811
    first = await county.warn("BULK-1")
    second = await county.warn("BULK-2", level="orange")
    calls_1, calls_2 = await county.calls(first), await county.calls(second)
    assert set(calls_1) == set(PHONE)
    async with county.runtime.db.sessions() as session:
        attempts = list(
            await session.scalars(select(Attempt).where(Attempt.warning_id.in_([first, second])))
        )
        responders = {r.id: r.external_id for r in await session.scalars(select(Responder))}
    for who, call in calls_1.items():
        # picked from the call's own id before the insert, never an id-less placeholder
        assert call.code == pick_code(call.id, [])
        if who in calls_2:
            other = calls_2[who]
            assert other.code == pick_code(other.id, [call.code])
            assert other.code != call.code
    by_call = Counter((a.call_id, a.channel) for a in attempts)
    assert set(by_call.values()) == {1}  # one first attempt per call and channel
    for attempt in attempts:
        mine = calls_1.get(responders[attempt.responder_id or 0])
        if attempt.warning_id == first:
            assert mine is not None and attempt.call_id == mine.id
            assert attempt.status == "queued" and attempt.due_at == clock.now()
    assert {a.address for a in attempts if a.channel == "sms"} == set(PHONE.values())
    # every attempt was enqueued after commit: the workers send them all
    await run_until_idle(county.runtime)
    async with county.runtime.db.sessions() as session:
        statuses = set(
            await session.scalars(
                select(Attempt.status).where(Attempt.warning_id.in_([first, second]))
            )
        )
    assert statuses and not statuses & {"queued", "sending"}


async def _job(queue: Queue, job_id: str) -> tuple[str, tuple[object, ...]]:
    raw = await queue.pool.get(job_key_prefix + job_id)
    assert raw is not None
    job = deserialize_job(raw)
    assert job.kwargs == {} and job.job_try is None
    return job.function, job.args


async def test_enqueue_many_keeps_arq_format_and_skips_queued(runtime: Runtime) -> None:
    queue = runtime.queue
    n = 2 * SEND_BATCH + 1
    ids = list(range(1, n + 1))  # two full batches and one attempt alone
    assert await queue.enqueue_attempts(ids) == n
    assert await queue.depth() == 3
    first = list(range(1, SEND_BATCH + 1))
    assert await _job(queue, f"attempts:1-{SEND_BATCH}:{SEND_BATCH}") == (SEND_ATTEMPTS, (first,))
    assert await _job(queue, f"attempt:{n}") == (SEND_ATTEMPT, (n,))
    # already queued: nothing added, nothing doubled
    assert await queue.enqueue_attempts(reversed(ids)) == 0
    assert await queue.depth() == 3
    # a job with a result is skipped too, as arq's enqueue_job skips it
    await queue.pool.set(result_key_prefix + "broadcast:7", pickle.dumps({}))
    assert await queue.enqueue_broadcasts([7, 8, 8]) == 1
    queued = await queue.pool.zrange(QUEUE_NAME, 0, -1)
    assert b"broadcast:8" in queued and b"broadcast:7" not in queued


async def test_statistics_job_analyzes_the_fan_out_tables(runtime: Runtime) -> None:
    """After a large fan-out a worker runs ANALYZE, so PostgreSQL plans answers' queries
    for a warning of 100,000 calls rather than for an empty table."""
    assert await runtime.queue.enqueue_statistics()
    assert not await runtime.queue.enqueue_statistics()  # one such job queued at a time
    assert await run_until_idle(runtime) == 1
    if runtime.db.is_sqlite:
        return
    async with runtime.db.sessions() as session:
        rows = await session.execute(
            text(
                "SELECT relname, last_analyze FROM pg_stat_user_tables "
                "WHERE relname IN ('calls', 'attempts')"
            )
        )
        analyzed = {name: at for name, at in rows}
    assert set(analyzed) == {"calls", "attempts"}
    assert all(at is not None for at in analyzed.values())


@pytest.mark.parametrize("many", [1, 2])
async def test_compacting_after_answers_analyzes_the_answers(
    county: County,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    many: int,
) -> None:
    """Once a burst of answers is compacted, the answers are analyzed with the calls and
    sends (a page's people then have their answers read by call, not by a whole scan),
    but not while there are fewer than `MANY_ANSWERS` (the answers trigger, planned for
    an empty table, would scan them all for each new answer)."""
    if county.runtime.db.is_sqlite:
        pytest.skip("SQLite plans without statistics")
    analyses = text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'answers'")
    async with county.runtime.db.sessions() as session:
        before = await session.scalar(analyses)
    await county.warn("ANALYZED")
    await county.work()
    await county.text("a1", "1")
    monkeypatch.setattr(counters, "COMPACT_AFTER_ROWS", 1)  # the county's handful will do
    monkeypatch.setattr(statistics, "MANY_ANSWERS", many)
    assert await compact_counters_job({"runtime": county.runtime}) > 0
    async with county.runtime.db.sessions() as session:
        assert await session.scalar(analyses) == before + (1 if many == 1 else 0)
