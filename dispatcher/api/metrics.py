"""`GET /metrics`: Prometheus text for warnings, calls, attempts, queue and circuits."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from dispatcher.api.deps import RuntimeDep
from dispatcher.metrics import collect

router = APIRouter(tags=["ops"])
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(runtime: RuntimeDep) -> PlainTextResponse:
    return PlainTextResponse(await collect(runtime), media_type=CONTENT_TYPE)
