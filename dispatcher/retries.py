"""How long to wait before trying a failed send again, and when to stop waiting.

Exponential backoff with "equal jitter": the n-th try waits between half and all of
`base * 2^(n-1)`, capped at `max_backoff_s`, so retries from a burst of failures spread
out instead of returning together.
"""

from __future__ import annotations

import random


class Deferred(Exception):
    """A send must wait (its rate-limit slot, or every provider's circuit is open).

    The row is back in the queue with its new due time; the job comes back after
    `real_delay_s` of real time (the clock converts).
    """

    def __init__(self, real_delay_s: float) -> None:
        super().__init__(f"deferred by {real_delay_s:.3f}s")
        self.real_delay_s = real_delay_s


def backoff_s(try_number: int, base_s: float, max_backoff_s: float) -> float:
    """Seconds to wait after failed try number `try_number` (1-based)."""
    ceiling = min(max_backoff_s, base_s * 2 ** max(0, try_number - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)
