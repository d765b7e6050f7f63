"""Watching PostgreSQL's row locks from a test: which connection waits for which."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from dispatcher.runtime import Runtime

_WAITING = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def until_a_lock_is_awaited(runtime: Runtime, who: str) -> None:
    """Until another connection of this database waits for a row lock; `who` names the
    waiter the test expects, for the failure message."""
    for _ in range(1000):
        async with runtime.db.sessions() as session:
            if await session.scalar(_WAITING):
                return
        await asyncio.sleep(0.01)  # another connection's progress, not the clock
    raise AssertionError(f"{who} never waited for a lock")
