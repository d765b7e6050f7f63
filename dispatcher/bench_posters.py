"""`jiaoying bench`'s SMS provider for the answer burst: a process of its own posting
one inbound reply per responder to the API server, as a provider's callbacks come over
the network.

`python -m dispatcher.bench_posters` reads one JSON line on stdin (`port`, `responders`,
`concurrency`, `path`), opens `concurrency` keep-alive HTTP/1.1 connections to
127.0.0.1:`port`, each posting the next reply (`From` the responder's phone, `Body` `1`,
and a `MessageSid` of its own, as a provider names each text) once the previous one got
its answer, and prints one JSON line: `elapsed_s` from the first request to the last
response, and `refused`, the first answer that was not a 200 (the burst stops there).
The client is a few lines over asyncio streams rather than an HTTP library, so the bench
measures the server, not the poster.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import urlencode

from dispatcher import event_loop
from dispatcher.bench_world import phone_of


class Refused(Exception):
    """The server answered a reply with something other than 200."""


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one response (Content-Length framed, as uvicorn sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


async def post_replies(port: int, responders: int, concurrency: int, path: str) -> float:
    """Seconds for `responders` replies, `concurrency` at a time; raises `Refused`."""
    next_index = 0

    async def poster() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while next_index < responders:
                index = next_index
                next_index += 1
                form = {"From": phone_of(index), "Body": "1", "MessageSid": f"SMBENCH{index:026d}"}
                body = urlencode(form).encode()
                writer.write(
                    f"POST {path} HTTP/1.1\r\nHost: bench\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                status, answer = await _response(reader)
                if status != 200:
                    text = answer.decode(errors="replace")
                    raise Refused(f"inbound reply refused: {status} {text}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(poster() for _ in range(concurrency)))
    return time.perf_counter() - started


def main() -> None:
    job = json.loads(sys.stdin.readline())
    result: dict[str, Any] = {"elapsed_s": None, "refused": None}
    try:
        result["elapsed_s"] = event_loop.run(
            post_replies(job["port"], job["responders"], job["concurrency"], job["path"])
        )
    except Refused as exc:
        result["refused"] = str(exc)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
