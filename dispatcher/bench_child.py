"""The protocol between `jiaoying bench` and the processes it starts (its workers, its API
server): the bench's settings go in as one JSON line on stdin; the child says `ready`
(and anything the bench needs, such as a port) on stdout once it serves; when its stdin
closes (the bench stops it, or the bench is gone) it stops and prints its peak RSS as a
JSON line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from dispatcher import event_loop
from dispatcher.config import Settings

READY = "ready"


class ChildProcess:
    """The bench's handle on one child process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @staticmethod
    async def launch(
        module: str, settings: Settings
    ) -> tuple[asyncio.subprocess.Process, list[str]]:
        """Start `python -m module`, hand it the settings and wait for its `ready`;
        returns the process and the words after `ready`."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(settings.model_dump_json().encode() + b"\n")
        await process.stdin.drain()
        words = (await process.stdout.readline()).decode().split()
        if not words or words[0] != READY:
            process.stdin.close()
            await process.wait()
            raise RuntimeError(f"{module} did not start (exit {process.returncode})")
        return process, words[1:]

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def stop(self) -> float | None:
        """Stop the process; returns its peak RSS in MB (None if it died before)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        output = (await self.process.stdout.read()).decode().strip().splitlines()
        await self.process.wait()
        try:
            return float(json.loads(output[-1])["peak_rss_mb"])
        except (IndexError, ValueError, KeyError):
            return None


def stdin_closed() -> asyncio.Future[None]:
    """Done when stdin reaches its end; read on a daemon thread, which never holds up exit."""
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()

    def finish() -> None:
        if not closed.done():
            closed.set_result(None)

    def read() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(finish)

    threading.Thread(target=read, daemon=True).start()
    return closed


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_main(serve: Callable[[Settings], Coroutine[Any, Any, float]]) -> None:
    """A child's `main`: settings from stdin, `serve` until stdin closes, then its RSS."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.model_validate_json(sys.stdin.readline())
    rss = event_loop.run(serve(settings))
    print(json.dumps({"peak_rss_mb": round(rss, 1)}), flush=True)
