"""`jiaoying bench`'s API server for the answer burst: the app over real HTTP, in a
process of its own, as `jiaoying serve --api-only` runs it.

`python -m dispatcher.bench_server` reads the bench's settings as one JSON line on stdin,
opens its own runtime on them, serves the app with uvicorn on a free port of 127.0.0.1
and says `ready <port>` on stdout. When its stdin closes it stops serving (requests in
hand are finished) and prints its peak RSS as a JSON line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import subprocess
import sys

import uvicorn

from dispatcher.app import create_app
from dispatcher.bench_worker import stdin_closed
from dispatcher.config import Settings
from dispatcher.runtime import open_runtime

READY = "ready"


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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ServerProcess:
    """The bench's handle on its API server process."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    @classmethod
    async def start(cls, settings: Settings) -> ServerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dispatcher.bench_server",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(settings.model_dump_json().encode() + b"\n")
        await process.stdin.drain()
        words = (await process.stdout.readline()).decode().split()
        if len(words) != 2 or words[0] != READY:
            process.stdin.close()
            await process.wait()
            raise RuntimeError(f"the bench server did not start (exit {process.returncode})")
        return cls(process, int(words[1]))

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def stop(self) -> float | None:
        """Stop the server; returns its peak RSS in MB (None if it died before)."""
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
