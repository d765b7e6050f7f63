"""One of `jiaoying bench`'s workers: a process of its own, so K workers use K cores.

`python -m dispatcher.bench_worker` reads the bench's settings as one JSON line on
stdin, opens its own runtime on them (system clock, the bench's database and Redis), runs
an arq worker without the cron sweep (the bench runs and times the sweep itself), and says
`ready` on stdout. When its stdin closes (the bench stops it, or the bench is gone) it
stops, lets the jobs in hand finish, and prints its peak RSS as a JSON line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import subprocess
import sys
import threading
from contextlib import suppress

from dispatcher.config import Settings
from dispatcher.runtime import open_runtime
from dispatcher.worker import build_worker

READY = "ready"


async def serve(settings: Settings) -> float:
    """Run a worker until stdin closes; returns this process's peak RSS in MB."""
    runtime = await open_runtime(settings, migrate=False)
    closed = stdin_closed()
    worker = build_worker(runtime, with_cron=False)
    main = asyncio.create_task(worker.main())
    print(READY, flush=True)
    try:
        await asyncio.wait(
            [main, closed],
            return_when="FIRST_COMPLETED",
        )
        if main.done():
            main.result()  # the worker stopped on its own: say why
    finally:
        main.cancel()
        with suppress(asyncio.CancelledError):
            await main
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        await runtime.aclose()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


class WorkerProcess:
    """The bench's handle on one worker process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, settings: Settings) -> WorkerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dispatcher.bench_worker",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(settings.model_dump_json().encode() + b"\n")
        await process.stdin.drain()
        line = (await process.stdout.readline()).decode().strip()
        if line != READY:
            await process.wait()
            raise RuntimeError(f"a bench worker did not start (exit {process.returncode})")
        return cls(process)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def stop(self) -> float | None:
        """Stop the worker; returns its peak RSS in MB (None if it died before)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        output = (await self.process.stdout.read()).decode().strip().splitlines()
        await self.process.wait()
        try:
            return float(json.loads(output[-1])["peak_rss_mb"])
        except (IndexError, ValueError, KeyError):
            return None


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.model_validate_json(sys.stdin.readline())
    rss = asyncio.run(serve(settings))
    print(json.dumps({"peak_rss_mb": round(rss, 1)}), flush=True)


if __name__ == "__main__":
    main()
