"""How Jiaoying's processes run their event loop: on uvloop where it is installed.

uvloop runs the same asyncio code on libuv, with less work per socket read and write,
which is most of what the API server and the workers do in a burst (HTTP requests,
PostgreSQL and Redis round trips). uvicorn picks it by itself only when started from its
own command line; `jiaoying serve` runs uvicorn inside a loop of its own, so the choice
is made here. Where uvloop is not installed (it does not build on Windows) the standard
loop runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from dispatcher import collector

_T = TypeVar("_T")


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """`asyncio.run(main)`, on uvloop when it is there, with the collector tuned for a
    server process (`dispatcher.collector`)."""
    collector.tune()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
