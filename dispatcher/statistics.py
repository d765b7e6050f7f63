"""Fresh planner statistics after a large fan-out or a directory import (PostgreSQL).

A warning for 100,000 people adds 100,000 calls and 300,000 sends in one transaction.
Until the tables are analyzed, PostgreSQL plans as if a warning had a handful of calls,
and the queries answers depend on (a person's open calls, a call's queued sends) scan
the whole warning instead: ~50 ms a reply instead of well under one. Autovacuum
catches up eventually, if it is on; a worker runs ANALYZE right after such a fan-out so
answers never wait for it. A directory import is analyzed as it commits, for the same
reason: planned for the handful of contacts there were before, each batch of SMS
replies found its senders by reading all 200,000 contacts of a 100,000-person county
(20-40 ms a batch instead of well under one). SQLite plans these queries well without
statistics.
"""

from __future__ import annotations

from sqlalchemy import text

from dispatcher.db import Database

# Fan-outs smaller than this do not change the tables' shape enough to matter.
BIG_FANOUT = 5000
TABLES = ("calls", "attempts")
# What a burst of answers changes, analyzed as its counters are compacted. Planned for
# the answers there were before a burst of 100,000, a page read its 500 people's answers
# by scanning all of them (25 ms) rather than by call (1.5 ms). Never while (nearly)
# empty: analyzed so, the answers trigger's plan, cached by each connection, scanned the
# whole table for every answer of the burst that followed (298 a second, not 1,083).
AFTER_ANSWERS = (*TABLES, "answers")
MANY_ANSWERS = 1000
DIRECTORY_TABLES = ("regions", "responders", "contacts", "duties", "speakers", "households")


async def refresh_statistics(db: Database, tables: tuple[str, ...] = TABLES) -> bool:
    """ANALYZE the tables a fan-out fills (or `tables`); returns whether anything was run."""
    if db.is_sqlite:
        return False
    async with db.engine.connect() as connection:
        await connection.execute(text("ANALYZE " + ", ".join(tables)))
        await connection.commit()
    return True


async def refresh_after_compaction(db: Database) -> bool:
    """ANALYZE the fan-out's tables, and the answers once there are `MANY_ANSWERS`."""
    if db.is_sqlite:
        return False
    async with db.engine.connect() as connection:
        answers = await connection.scalar(
            text("SELECT count(*) FROM (SELECT 1 FROM answers LIMIT :many) AS enough"),
            {"many": MANY_ANSWERS},
        )
    return await refresh_statistics(db, AFTER_ANSWERS if answers >= MANY_ANSWERS else TABLES)
