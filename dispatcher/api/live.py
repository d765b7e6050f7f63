"""`/live`: server-sent events with fresh figures whenever a warning's state changes.

`GET /live?warning=ID[&warning=ID...][&region=CODE]` streams `event: update` with the JSON
of `dispatcher.live.snapshot`, in the reader's scope (narrowed to `region` on a drilled-down
page): once at the start, then within half a second of any change. A stream ends after
`STREAM_S` seconds; the browser's EventSource reconnects on its own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from dispatcher.api.deps import RuntimeDep
from dispatcher.api.session import AccessDep, region_or_404, warning_or_404
from dispatcher.live import fingerprint, snapshot
from dispatcher.models import Warning

router = APIRouter(tags=["dashboard"])
POLL_S = 0.5
HEARTBEAT_POLLS = 30
STREAM_S = 600
MAX_WARNINGS = 50


@router.get("/live", response_class=StreamingResponse)
async def live(
    request: Request,
    runtime: RuntimeDep,
    access: AccessDep,
    warning: Annotated[list[int], Query()],
    region: str | None = None,
) -> StreamingResponse:
    if len(warning) > MAX_WARNINGS:
        raise HTTPException(422, f"warning: at most {MAX_WARNINGS} at once")
    async with runtime.db.sessions() as session:
        ids = [(await warning_or_404(session, access, w)).id for w in warning]
        node = await region_or_404(session, access, region) if region else None
    scope = replace(access, region_path=node.path, region_code=node.code) if node else access

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        last = None
        polls = 0
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + STREAM_S

        async def read(last: Any) -> tuple[Any, dict[str, Any] | None]:
            data = None
            async with runtime.db.sessions() as session:
                mark = await fingerprint(session, ids)
                if mark != last:
                    warnings = list(
                        await session.scalars(
                            select(Warning).where(Warning.id.in_(ids)).order_by(Warning.id)
                        )
                    )
                    data = await snapshot(session, warnings, scope, runtime.clock.now())
            return mark, data

        while loop.time() < ends_at and not await request.is_disconnected():
            # Never yield inside the session: a client gone meanwhile leaves this generator
            # suspended at its yield until it is collected, and the session would keep its
            # connection and transaction (on SQLite, the write lock) all that time. And
            # read in a task of its own: a client leaving cancels this generator's scope,
            # which cancels every await in it again, the session's close included.
            mark, data = await asyncio.shield(read(last))
            if data is not None:
                yield f"event: update\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
                last = mark
                polls = 0
            polls += 1
            if polls % HEARTBEAT_POLLS == 0:
                yield ": still here\n\n"
            await asyncio.sleep(POLL_S)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
