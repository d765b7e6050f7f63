"""Per-provider send rates, kept in Redis so every worker on every machine shares them.

Each (channel, provider) has a "next free slot" time in Redis. `reserve` atomically (one
Lua script) hands out the next slot and moves it on by 1/rate, so sends are spaced evenly
and never more than `rate` start in any second, however many workers there are. A job
reserves once, remembers its slot on the attempt row, and is deferred until then: a
10,000-person warning becomes a queue of evenly spaced jobs, not a herd that retries.
`reserve_many` hands out a batch's slots in the same single script call.

Times are the injected clock's, in seconds since the epoch.
"""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis

from dispatcher.redis_keys import rate_slot_key

_RESERVE = """
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local slot = math.max(tat, now)
-- keep the key a minute past the furthest reservation (real milliseconds)
local ttl_ms = math.ceil((slot + interval - now) * 1000) + 60000
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX', ttl_ms)
return tostring(slot)
"""

# ARGV: now, interval, count -> the count consecutive slots, as strings
_RESERVE_MANY = """
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local first = math.max(tat, now)
local slots = {}
for i = 0, count - 1 do
  slots[i + 1] = tostring(first + i * interval)
end
local after = first + count * interval
local ttl_ms = math.ceil((after - now) * 1000) + 60000
redis.call('SET', KEYS[1], tostring(after), 'PX', ttl_ms)
return slots
"""


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_RESERVE)
        self._many = redis.register_script(_RESERVE_MANY)

    async def reserve(
        self, channel: str, provider: str, rate_per_s: float, now: datetime
    ) -> datetime:
        """The moment this send may start (`now` when the provider has room)."""
        if rate_per_s <= 0:
            return now
        raw = await self._script(
            keys=[rate_slot_key(channel, provider)],
            args=[repr(now.timestamp()), repr(1.0 / rate_per_s)],
        )
        return _moment(raw)

    async def reserve_many(
        self, channel: str, provider: str, rate_per_s: float, now: datetime, count: int
    ) -> list[datetime]:
        """The start of each of `count` sends, in order: the same slots `count` calls of
        `reserve` would hand out, taken at once."""
        if rate_per_s <= 0 or count <= 0:
            return [now] * max(count, 0)
        raw = await self._many(
            keys=[rate_slot_key(channel, provider)],
            args=[repr(now.timestamp()), repr(1.0 / rate_per_s), count],
        )
        return [_moment(slot) for slot in raw]


def _moment(raw: bytes | str) -> datetime:
    slot = float(raw.decode() if isinstance(raw, bytes) else raw)
    return datetime.fromtimestamp(slot, UTC)
