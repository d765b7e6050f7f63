"""The clock the core reads time from, injected so deadlines can be tested without sleeping.

Nothing in the core calls `datetime.now()` directly: it asks a `Clock`. Production uses
`SystemClock`; tests use `ManualClock` and move it forward; the demo uses `ScaledClock`
so a five-minute deadline passes in thirty seconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...

    def real_delay(self, seconds: float) -> float:
        """How long to wait in real time for `seconds` of this clock to pass.

        Used to defer jobs (rate-limit slots, retries). A manual clock moves only when
        told, so it answers 0: the job comes back at once, finds it is not yet due, and
        the sweep takes it when the test moves the clock.
        """
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def real_delay(self, seconds: float) -> float:
        return max(0.0, seconds)


class ManualClock:
    """A clock that stands still until told to move."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 7, 1, 2, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment

    def real_delay(self, seconds: float) -> float:
        return 0.0


class ScaledClock:
    """Runs `speed` times faster than the wall clock, starting from the real now."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._origin = datetime.now(UTC)
        self._started = time.monotonic()

    def now(self) -> datetime:
        elapsed = time.monotonic() - self._started
        return self._origin + timedelta(seconds=elapsed * self.speed)

    def real_delay(self, seconds: float) -> float:
        return max(0.0, seconds) / self.speed
