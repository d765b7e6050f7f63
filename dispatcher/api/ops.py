"""Operating surface: `/healthz`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from dispatcher.api.deps import RuntimeDep

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz(runtime: RuntimeDep) -> JSONResponse:
    problems = []
    try:
        async with runtime.db.sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        problems.append(f"database: {type(exc).__name__}")
    try:
        await runtime.queue.ping()
    except Exception as exc:
        problems.append(f"redis: {type(exc).__name__}")
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ok"})
