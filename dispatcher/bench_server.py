"""`jiaoying bench`'s API server for the answer burst: the app over real HTTP, in a
process of its own, as `jiaoying serve --api-only` runs it.

`python -m dispatcher.bench_server` reads the bench's settings as one JSON line on stdin,
opens its own runtime on them, serves the app with uvicorn on a free port of 127.0.0.1
and says `ready <port>` on stdout. When its stdin closes it stops serving (requests in
hand are finished) and prints its peak RSS as a JSON line.
"""

from __future__ import annotations

import asyncio

import uvicorn

from dispatcher.app import create_app
from dispatcher.bench_child import READY, ChildProcess, child_main, peak_rss_mb, stdin_closed
from dispatcher.config import Settings
from dispatcher.runtime import open_runtime


async def serve(settings: Settings) -> float:
    """Serve the app until stdin closes; returns this process's peak RSS in MB."""
    runtime = await open_runtime(settings, migrate=False)
    closed = stdin_closed()
    config = uvicorn.Config(
        create_app(runtime), host="127.0.0.1", port=0, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()  # it stopped before it started: say why
                raise RuntimeError("the server stopped before it started")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"{READY} {port}", flush=True)
        await asyncio.wait([serving, closed], return_when="FIRST_COMPLETED")
        server.should_exit = True
        await serving
    finally:
        await runtime.aclose()
    return peak_rss_mb()


class ServerProcess(ChildProcess):
    """The bench's handle on its API server process."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        super().__init__(process)
        self.port = port

    @classmethod
    async def start(cls, settings: Settings) -> ServerProcess:
        process, words = await cls.launch("dispatcher.bench_server", settings)
        return cls(process, int(words[0]))


if __name__ == "__main__":
    child_main(serve)
