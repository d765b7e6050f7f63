"""One of `jiaoying bench`'s workers: a process of its own, so K workers use K cores.

`python -m dispatcher.bench_worker` reads the bench's settings as one JSON line on
stdin, opens its own runtime on them (system clock, the bench's database and Redis), runs
an arq worker without the cron sweep (the bench runs and times the sweep itself), and says
`ready` on stdout. When its stdin closes (the bench stops it, or the bench is gone) it
stops, lets the jobs in hand finish, and prints its peak RSS as a JSON line.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

from dispatcher.bench_child import READY, ChildProcess, child_main, peak_rss_mb, stdin_closed
from dispatcher.config import Settings
from dispatcher.runtime import open_runtime
from dispatcher.worker import build_worker


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
    return peak_rss_mb()


class WorkerProcess(ChildProcess):
    """The bench's handle on one worker process."""

    @classmethod
    async def start(cls, settings: Settings) -> WorkerProcess:
        process, _ = await cls.launch("dispatcher.bench_worker", settings)
        return cls(process)


if __name__ == "__main__":
    child_main(serve)
