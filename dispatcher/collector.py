"""How often Jiaoying's processes run Python's cyclic garbage collector.

A big warning's fan-out builds hundreds of thousands of short-lived objects (its target,
the calls' rows, their ids); with Python's default thresholds each few hundred thousand
allocations end in a full collection that walks every object the process holds. In the
webhook's process at N = 100,000 those full collections took ~1 s of the 4-5 s before
the 202. Nearly all of Jiaoying's garbage is freed by reference counting the moment it
is dropped; the collector is only for reference cycles (ORM states and their objects,
exceptions with tracebacks), which can wait for a young collection every 10,000
allocations and a full one every 5,000 young ones instead of every 100.
"""

from __future__ import annotations

import gc

YOUNG = 10_000  # allocations between young collections (Python's default: 700)
MIDDLE = 50  # young collections between middle ones (default 10)
FULL = 100  # middle collections between full ones (default 10)


def tune() -> None:
    """Set this process's collector thresholds (every `jiaoying` process calls it)."""
    gc.set_threshold(YOUNG, MIDDLE, FULL)
