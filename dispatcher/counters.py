"""A warning's figures, summed from the counter rows the database keeps as things happen.

`call_counts`, `funnel_counts` and `curve_counts` (`dispatcher.models`) are written by
triggers in the same transaction as every insert or update of a call, a call's attempt
or an answer: -1 for the figure a row leaves, +1 for the one it enters. Rows are only
added, never updated, so concurrent workers never wait on a shared counter. Readers sum
a warning's rows per key; `compact_counters` replaces each key's many rows by one, so a
read costs in proportion to the warning's regions (or seconds), not to its events.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.access import Access, region_condition
from dispatcher.db import Database
from dispatcher.models import CallCount, CurveCount, FunnelCount, Region
from dispatcher.vocabulary import CallState, Meaning

# The funnel's stages. The triggers (migration 0010) count an attempt `sent` when its
# status is sent, no_answer or busy (a provider took it), `delivered` when delivered,
# else `tried`; a call's first answer is `answered`.
TRIED, SENT, DELIVERED, ANSWERED = "tried", "sent", "delivered", "answered"
# Compact a warning's counters once this many rows were added since its last compaction.
COMPACT_AFTER_ROWS = 2000


async def call_counts(
    session: AsyncSession, warning_id: int, access: Access
) -> list[tuple[str, str | None, int, int]]:
    """(state, answer meaning, calls, evacuated) of the warning's calls in scope;
    `calling` calls count as `pending`."""
    counts = CallCount.__table__.c
    calls = func.sum(counts.calls)
    rows = await session.execute(
        select(counts.state, counts.answer_meaning, calls, func.sum(counts.evacuated))
        .where(counts.warning_id == warning_id, region_condition(counts.region_id, access))
        .group_by(counts.state, counts.answer_meaning)
        .having(calls != 0)
    )
    return [(state, meaning, int(n), int(people)) for state, meaning, n, people in rows.all()]


async def region_counts(
    session: AsyncSession, warning_id: int, access: Access
) -> list[tuple[str, int, int, int, int]]:
    """(region path, calls, answered, help, evacuated) per region with calls in scope."""
    counts, regions = CallCount.__table__.c, Region.__table__.c
    calls = func.sum(counts.calls)
    per_region = (
        select(
            counts.region_id,
            calls.label("calls"),
            func.sum(counts.calls).filter(counts.state == CallState.ANSWERED).label("answered"),
            func.sum(counts.calls).filter(counts.answer_meaning == Meaning.HELP).label("help"),
            func.sum(counts.evacuated).label("evacuated"),
        )
        .where(counts.warning_id == warning_id, region_condition(counts.region_id, access))
        .group_by(counts.region_id)
        .having(calls != 0)
        .subquery()
    )
    rows = await session.execute(
        select(
            regions.path,
            per_region.c.calls,
            per_region.c.answered,
            per_region.c.help,
            per_region.c.evacuated,
        ).join(per_region, per_region.c.region_id == regions.id)
    )
    return [
        (path, int(n), int(answered or 0), int(help_ or 0), int(people))
        for path, n, answered, help_, people in rows.all()
    ]


async def funnel_counts(
    session: AsyncSession, warning_id: int, access: Access
) -> list[tuple[str, str | None, str, int]]:
    """(channel, provider, stage, count) of the warning's call attempts and first answers
    in scope; stage is `tried`, `sent`, `delivered` (attempts) or `answered`."""
    counts = FunnelCount.__table__.c
    total = func.sum(counts.count)
    rows = await session.execute(
        select(counts.channel, counts.provider, counts.stage, total)
        .where(counts.warning_id == warning_id, region_condition(counts.region_id, access))
        .group_by(counts.channel, counts.provider, counts.stage)
        .having(total != 0)
    )
    return [(channel, provider, stage, int(n)) for channel, provider, stage, n in rows.all()]


async def answers_per_second(
    session: AsyncSession, warning_id: int, access: Access
) -> list[tuple[datetime, int]]:
    """(second, calls first answered in it) in scope, oldest first. Each region counts
    the calls of its whole subtree: a scope reads its root's rows, everything its tree's
    roots'."""
    counts, regions = CurveCount.__table__.c, Region.__table__.c
    roots = (
        select(regions.id).where(regions.parent_id.is_(None))
        if access.region_path is None
        else select(regions.id).where(regions.path == access.region_path)
    )
    total = func.sum(counts.count)
    rows = await session.execute(
        select(counts.at_second, total)
        .where(counts.warning_id == warning_id, counts.region_id.in_(roots))
        .group_by(counts.at_second)
        .having(total != 0)
        .order_by(counts.at_second)
    )
    return [(second, int(n)) for second, n in rows.all()]


_KEYS = {
    "call_counts": ("region_id", "state", "answer_meaning"),
    "funnel_counts": ("region_id", "channel", "provider", "stage"),
    "curve_counts": ("region_id", "at_second"),
}
_SUMS = {
    "call_counts": ("calls", "evacuated"),
    "funnel_counts": ("count",),
    "curve_counts": ("count",),
}


async def compact_counters(session: AsyncSession, table: str, warning_id: int) -> None:
    """Replace each key's rows of the warning in `table` by one row holding their sum
    (none when it is zero). Exact with writers adding rows meanwhile: on PostgreSQL the
    rows summed are exactly those the same statement deleted (rows committed after it
    began are neither); SQLite's writers wait for this transaction (`BEGIN IMMEDIATE`)."""
    keys, sums = _KEYS[table], _SUMS[table]
    columns = ", ".join(("warning_id", *keys, *sums))
    grouped = ", ".join(("warning_id", *keys))
    totals = ", ".join(f"sum({s})" for s in sums)
    nonzero = " OR ".join(f"sum({s}) <> 0" for s in sums)
    summed = f"SELECT {grouped}, {totals} FROM {{rows}} GROUP BY {grouped} HAVING {nonzero}"
    of_warning = {"w": warning_id}
    if session.get_bind().dialect.name == "sqlite":
        rows = await session.execute(
            text(summed.format(rows=f"{table} WHERE warning_id = :w")), of_warning
        )
        names = columns.split(", ")
        values = [dict(zip(names, row, strict=True)) for row in rows.all()]
        await session.execute(text(f"DELETE FROM {table} WHERE warning_id = :w"), of_warning)
        if values:
            marks = ", ".join(f":{name}" for name in names)
            await session.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({marks})"), values)
        return
    # Only keys with more than one row are rewritten: with autovacuum off, rewriting
    # every row of a big warning each time would leave as many dead ones behind.
    # `=` on every key, a nullable one's NULL made '' on both sides (no real meaning or
    # provider is empty): IS NOT DISTINCT FROM cannot be hashed, and joined a million
    # rows to their keys one pair at a time (minutes at 100,000 calls).
    columns_of = CallCount.metadata.tables[table].c
    same_key = " AND ".join(
        f"coalesce(c.{k}, '') = coalesce(d.{k}, '')" if columns_of[k].nullable else f"c.{k} = d.{k}"
        for k in keys
    )
    await session.execute(
        text(
            f"WITH d AS (SELECT {', '.join(keys)} FROM {table} WHERE warning_id = :w "
            f"GROUP BY {', '.join(keys)} HAVING count(*) > 1), "
            f"gone AS (DELETE FROM {table} c USING d WHERE c.warning_id = :w AND {same_key} "
            f"RETURNING c.*) INSERT INTO {table} ({columns}) {summed.format(rows='gone')}"
        ),
        of_warning,
    )


async def compact_added(db: Database, marks: dict[str, int]) -> int:
    """Compact the counters of every warning that gained `COMPACT_AFTER_ROWS` rows or
    more in a table since `marks[table]` (the newest row id seen there by the last call,
    updated in place; start from 0). Returns how many (table, warning) pairs it compacted.

    Rows of a transaction still open when the mark moves past them are summed all the
    same; they only wait for their warning's next compaction to be merged."""
    done = 0
    for table in _KEYS:
        async with db.sessions() as session:
            rows = await session.execute(
                text(
                    f"SELECT warning_id, count(*) FROM {table} WHERE id > :mark GROUP BY warning_id"
                ),
                {"mark": marks.get(table, 0)},
            )
            due = sorted(w for w, added in rows.all() if added >= COMPACT_AFTER_ROWS)
        for warning_id in due:
            async with db.transaction() as session:
                await compact_counters(session, table, warning_id)
            done += 1
        async with db.sessions() as session:
            newest = await session.scalar(text(f"SELECT max(id) FROM {table}"))
        marks[table] = max(marks.get(table, 0), int(newest or 0))
    return done
