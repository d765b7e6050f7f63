"""Everything a Jiaoying process shares: settings, clock, database, queue, providers.

The API and the worker both run on a `Runtime`; in `jiaoying serve` they share one.
Tests build their own with a `ManualClock`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx

from dispatcher.circuit import CircuitBreakers
from dispatcher.clock import Clock, SystemClock
from dispatcher.config import Settings
from dispatcher.db import Database
from dispatcher.messages import Renderer
from dispatcher.migrations import upgrade
from dispatcher.providers import Providers
from dispatcher.queue import Queue, RedisHandle, open_redis
from dispatcher.ratelimit import RateLimiter
from dispatcher.recipient_limits import RecipientLimiter
from dispatcher.reply_batches import ReplyBatcher

log = logging.getLogger(__name__)
# (channel, provider, request, real delay) of callbacks scheduled while held back.
HeldCallback = tuple[str, str, dict[str, Any], float]
_held_callbacks: ContextVar[list[HeldCallback] | None] = ContextVar("held_callbacks", default=None)


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    db: Database
    redis: RedisHandle
    queue: Queue
    http: httpx.AsyncClient
    providers: Providers
    renderer: Renderer
    limiter: RateLimiter
    breakers: CircuitBreakers
    recipients: RecipientLimiter
    owns_redis: bool = True
    replies: ReplyBatcher = field(default_factory=ReplyBatcher)

    async def aclose(self) -> None:
        await self.providers.aclose()
        await self.http.aclose()
        await self.queue.close()
        await self.db.dispose()
        if self.owns_redis:
            self.redis.close()


async def open_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    migrate: bool = True,
    redis: RedisHandle | None = None,
) -> Runtime:
    settings.app.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    if migrate:
        await upgrade(db.engine)
    owns_redis = redis is None
    redis = redis or open_redis(settings.redis.url, settings.app.data_dir)
    queue = await Queue.connect(redis)
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
    clock = clock or SystemClock()

    async def schedule(
        channel: str, provider: str, request: dict[str, Any], delay_s: float
    ) -> None:
        # A simulated recipient's delay is in the clock's time: a demo at 30x hears back
        # 30 times sooner, and a test's manual clock hears back at once.
        held = _held_callbacks.get()
        if held is not None:
            held.append((channel, provider, request, clock.real_delay(delay_s)))
            return
        await queue.enqueue_callback(channel, provider, request, clock.real_delay(delay_s))

    providers = Providers.build(settings, http, schedule)
    log.info("runtime ready: database %s, %s", db.engine.url.render_as_string(), redis.description)
    return Runtime(
        settings=settings,
        clock=clock,
        db=db,
        redis=redis,
        queue=queue,
        http=http,
        providers=providers,
        renderer=Renderer(),
        limiter=RateLimiter(queue.pool),
        breakers=CircuitBreakers(queue.pool, settings.failover),
        recipients=RecipientLimiter(queue.pool),
        owns_redis=owns_redis,
    )


@asynccontextmanager
async def callbacks_held(runtime: Runtime) -> AsyncIterator[None]:
    """Hold back the callbacks simulated providers schedule in this block until it ends.

    A batch's sends are recorded after the whole batch is sent; a real provider's report
    comes over the network after its send was answered, but a zero-delay simulated one
    would reach a worker before the record and only be retried. Held callbacks are
    enqueued when the block ends, whether or not it failed.
    """
    held: list[HeldCallback] = []
    token = _held_callbacks.set(held)
    try:
        yield
    finally:
        _held_callbacks.reset(token)
        await runtime.queue.enqueue_callbacks(held)
