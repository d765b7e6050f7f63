"""PostgreSQL's connection pool: a connection that sat idle is checked before use, so one
the server closed meanwhile is replaced instead of failing the next transaction; one
taken again at once is not checked."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, text

from dispatcher.db import create_engine


def _postgres_url(server_urls: tuple[str, str] | None) -> str:
    if server_urls is None:
        pytest.skip("JIAOYING_TEST_DATABASE_URL is not set")
    return server_urls[0]


async def test_an_idle_connection_the_server_closed_is_replaced(
    server_urls: tuple[str, str] | None,
) -> None:
    url = _postgres_url(server_urls)
    engine = create_engine(url, ping_after_idle_s=0.0)
    other = create_engine(url)
    try:
        async with engine.connect() as connection:
            closed = await connection.scalar(text("SELECT pg_backend_pid()"))
        async with other.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": closed})
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT 1")) == 1
            assert await connection.scalar(text("SELECT pg_backend_pid()")) != closed
    finally:
        await engine.dispose()
        await other.dispose()


async def test_a_connection_taken_again_at_once_is_not_checked(
    server_urls: tuple[str, str] | None,
) -> None:
    engine = create_engine(_postgres_url(server_urls), ping_after_idle_s=3600.0)
    pings: list[Any] = []
    dialect = engine.sync_engine.dialect
    ping = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    dialect.do_ping = counted  # type: ignore[method-assign]
    checkouts: list[Any] = []
    event.listen(engine.sync_engine.pool, "checkout", lambda *args: checkouts.append(args))
    try:
        for _ in range(3):
            async with engine.connect() as connection:
                assert await connection.scalar(text("SELECT 1")) == 1
        assert len(checkouts) == 3
        assert pings == []
    finally:
        await engine.dispose()
