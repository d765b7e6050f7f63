"""A circuit breaker per (channel, provider), its state in Redis so all workers agree.

closed     sends go through; consecutive retryable failures are counted
open       after `failures_to_open` of them in a row (within `window_s`): the provider is
           skipped, sends fail over to the next one on the route, for `open_s`
half_open  then one worker at a time may send a trial: success closes the circuit,
           failure opens it for another `open_s`

Each transition is one Lua script, so two workers never both take the trial. Times are
the injected clock's, in seconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from dispatcher.config import FailoverSettings
from dispatcher.redis_keys import circuit_key

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

# -> {decision, open_until}; decision: closed | trial | open
_ALLOW = """
local now = tonumber(ARGV[1])
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until == 0 then return {'closed', '0'} end
if now < open_until then return {'open', tostring(open_until)} end
local trial_until = tonumber(redis.call('HGET', KEYS[1], 'trial_until') or '0')
if now < trial_until then return {'open', tostring(trial_until)} end
redis.call('HSET', KEYS[1], 'trial_until', tostring(now + tonumber(ARGV[2])))
return {'trial', '0'}
"""

# ARGV: now, failures_to_open, window_s, open_s -> new state
_FAILURE = """
local now = tonumber(ARGV[1])
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until > 0 then
  redis.call('HSET', KEYS[1], 'open_until', tostring(now + tonumber(ARGV[4])),
             'trial_until', '0', 'failures', '0')
  return 'open'
end
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '0')
if failures == 0 or now - since > tonumber(ARGV[3]) then
  failures = 0
  since = now
end
failures = failures + 1
if failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'open_until', tostring(now + tonumber(ARGV[4])),
             'trial_until', '0', 'failures', '0', 'since', tostring(now))
  return 'open'
end
redis.call('HSET', KEYS[1], 'failures', tostring(failures), 'since', tostring(since))
return 'closed'
"""


@dataclass(frozen=True)
class Admission:
    allowed: bool
    # When an open circuit may next be tried (None when allowed).
    retry_at: datetime | None = None
    # Allowed as the half-open circuit's one trial: a single send, not a batch.
    trial: bool = False


class CircuitBreakers:
    def __init__(self, redis: Redis, settings: FailoverSettings) -> None:
        self._redis = redis
        self._settings = settings
        self._allow = redis.register_script(_ALLOW)
        self._failure = redis.register_script(_FAILURE)

    async def admit(self, channel: str, provider: str, now: datetime) -> Admission:
        """May a send go to this provider now? A half-open circuit admits one trial."""
        # A trial that never reports back (a crashed worker) frees the way after this.
        trial_s = max(self._settings.open_s, 30.0)
        decision, until = await self._allow(
            keys=[circuit_key(channel, provider)], args=[repr(now.timestamp()), repr(trial_s)]
        )
        if _text(decision) == "open":
            return Admission(False, datetime.fromtimestamp(float(_text(until)), UTC))
        return Admission(True, trial=_text(decision) == "trial")

    async def record_failure(self, channel: str, provider: str, now: datetime) -> str:
        """Count a retryable failure; returns the state after it."""
        s = self._settings
        state = await self._failure(
            keys=[circuit_key(channel, provider)],
            args=[repr(now.timestamp()), s.failures_to_open, repr(s.window_s), repr(s.open_s)],
        )
        return _text(state)

    async def record_success(self, channel: str, provider: str) -> None:
        await self._redis.delete(circuit_key(channel, provider))

    async def state(self, channel: str, provider: str, now: datetime) -> str:
        raw = await self._redis.hget(circuit_key(channel, provider), "open_until")  # type: ignore[misc]
        open_until = float(_text(raw)) if raw else 0.0
        if open_until == 0:
            return CLOSED
        return OPEN if now.timestamp() < open_until else HALF_OPEN


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
