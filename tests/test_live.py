"""Server-sent events: an answer recorded by the worker reaches an open stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import text
from starlette.requests import Request

from dispatcher.api.live import live
from dispatcher.app import create_app
from dispatcher.summary import EVERYTHING
from tests.auth import sign_in
from tests.fakes.serving import serve
from tests.scenario import County, county

__all__ = ["county"]
# A guard so a broken stream fails the test instead of hanging it; not a measurement.
GUARD_S = 10


async def updates(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The `update` events of an SSE stream, as parsed JSON."""
    event, data = "", []
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
        elif line == "":
            if event == "update":
                yield json.loads("\n".join(data))
            event, data = "", []


async def test_an_answer_reaches_an_open_stream(county: County) -> None:
    warning = await county.warn("LIVE", "red", codes=("441799100001",))
    await county.work()
    async with serve(create_app(county.runtime)) as url, httpx.AsyncClient(base_url=url) as client:
        await sign_in(client, county.runtime)
        async with client.stream("GET", f"/live?warning={warning}") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = updates(response)
            first = await asyncio.wait_for(anext(stream), GUARD_S)
            assert first["warnings"][0]["answered"] == 0 and first["answers"] == []
            silent = first["warnings"][0]["silent"]
            await county.text("a1", "1")
            await county.work()
            second = await asyncio.wait_for(anext(stream), GUARD_S)
            figures = second["warnings"][0]
            assert (figures["answered"], figures["silent"]) == (1, silent - 1)
            assert second["answers"][0]["name"] == "张三"
            assert second["answers"][0]["status"] == "收到"
            assert "<path" not in first["curve"] and "<path" in second["curve"]
            assert second["regions"]["441799100001"] == {
                "answered": 1,
                "calls": first["regions"]["441799100001"]["calls"],
                "rate": 1 / first["regions"]["441799100001"]["calls"],
            }
            await stream.aclose()


async def test_streams_refuse_what_the_reader_may_not_see(county: County) -> None:
    warning = await county.warn("LIVE", "red", codes=("441799100001",))
    transport = httpx.ASGITransport(app=create_app(county.runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as anon:
        response = await anon.get(f"/live?warning={warning}")
        assert response.status_code == 303
    assert (await county.client.get("/live?warning=999999")).status_code == 404
    assert (await county.client.get("/live")).status_code == 422


async def test_a_stream_holds_no_session_while_it_waits_to_be_read(county: County) -> None:
    """A client that stops reading leaves the stream suspended where it yielded (until
    it is collected); no connection, transaction or SQLite write lock may be held there."""
    warning = await county.warn("LIVE", "red", codes=("441799100001",))
    await county.work()

    async def never(*_: Any) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    request = Request({"type": "http", "method": "GET", "path": "/live", "headers": []}, never)
    response = await live(request, county.runtime, EVERYTHING, warning=[warning], region=None)
    events = response.body_iterator
    assert "retry" in str(await anext(events))
    assert "event: update" in str(await asyncio.wait_for(anext(events), GUARD_S))
    assert county.runtime.db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with county.runtime.db.transaction() as session:  # the lock is free to take
        await session.execute(text("SELECT 1"))
    await events.aclose()  # type: ignore[attr-defined]
