"""Sends per recipient, for providers that limit them (WeCom, Aliyun voice), in Redis.

Each (channel, provider, recipient) keeps the times of its recent sends in a sorted set.
`admit` (one Lua script, so every worker agrees) either records a send now and returns
`now`, or returns the earliest time at which every (count, window) limit the provider
declared would allow one more, recording nothing: the send waits as a deferred job and
asks again then. The recipient's address appears in the key only as a hash.

Times are the injected clock's, in seconds since the epoch.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from redis.asyncio import Redis

from dispatcher.redis_keys import recipient_sends_key

# KEYS[1]: the sorted set. ARGV: now, member, then count and window pairs.
_ADMIT = """
local now = tonumber(ARGV[1])
local longest = 0
for i = 3, #ARGV, 2 do
  longest = math.max(longest, tonumber(ARGV[i + 1]))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
local at = now
for round = 1, (#ARGV - 2) / 2 + 1 do
  local moved = false
  for i = 3, #ARGV, 2 do
    local limit = tonumber(ARGV[i])
    local window = tonumber(ARGV[i + 1])
    local recent = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. tostring(at - window), '+inf',
                              'WITHSCORES')
    local count = #recent / 2
    if count >= limit then
      local free = tonumber(recent[(count - limit) * 2 + 2]) + window
      if free > at then
        at = free
        moved = true
      end
    end
  end
  if not moved then break end
end
if at <= now then
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], math.ceil(longest * 1000) + 60000)
end
return tostring(at)
"""


class RecipientLimiter:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_ADMIT)

    async def admit(
        self,
        channel: str,
        provider: str,
        address: str,
        limits: tuple[tuple[int, float], ...],
        send_id: str,
        now: datetime,
    ) -> datetime:
        """`now` (and the send is counted) if the recipient may get it now, else when."""
        if not limits:
            return now
        digest = hashlib.sha256(address.encode()).hexdigest()[:24]
        args: list[str] = [repr(now.timestamp()), send_id]
        for count, window_s in limits:
            args += [str(int(count)), repr(float(window_s))]
        raw = await self._script(keys=[recipient_sends_key(channel, provider, digest)], args=args)
        at = float(raw.decode() if isinstance(raw, bytes) else raw)
        return now if at <= now.timestamp() else datetime.fromtimestamp(at, UTC)
