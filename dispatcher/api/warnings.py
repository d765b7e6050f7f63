"""The warning webhook and the warnings read API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from dispatcher.api.deps import RuntimeDep, SessionDep
from dispatcher.cap import WarningRejected
from dispatcher.ingest import ingest
from dispatcher.models import Warning
from dispatcher.security import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureRejected
from dispatcher.summary import list_calls, region_tree, warning_public, warning_summary

router = APIRouter(prefix="/api/v1/warnings", tags=["warnings"])


@router.post("", status_code=202)
async def post_warning(request: Request, runtime: RuntimeDep) -> JSONResponse:
    body = await request.body()
    if len(body) > runtime.settings.server.max_body_bytes:
        return JSONResponse({"detail": "body too large"}, status_code=413)
    try:
        result = await ingest(
            runtime,
            body=body,
            content_type=request.headers.get("content-type"),
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            signature=request.headers.get(SIGNATURE_HEADER),
        )
    except SignatureRejected as exc:
        return JSONResponse({"detail": exc.message}, status_code=401)
    except WarningRejected as exc:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)
    return JSONResponse(
        {
            "id": result.id,
            "calls": result.calls,
            "broadcasts": result.broadcasts,
            "duplicate": result.duplicate,
            "level": result.level,
            "notes": result.notes,
        },
        status_code=202,
    )


@router.get("")
async def get_warnings(session: SessionDep) -> list[dict[str, Any]]:
    warnings = await session.scalars(select(Warning).order_by(Warning.id.desc()).limit(100))
    return [warning_public(w) for w in warnings]


async def _warning(session: SessionDep, warning_id: int) -> Warning:
    warning = await session.get(Warning, warning_id)
    if warning is None:
        raise HTTPException(404, f"no warning {warning_id}")
    return warning


@router.get("/{warning_id}")
async def get_warning(warning_id: int, session: SessionDep) -> dict[str, Any]:
    warning = await _warning(session, warning_id)
    summary = await warning_summary(session, warning)
    return {**warning_public(warning), **summary, "regions": await region_tree(session, warning_id)}


@router.get("/{warning_id}/calls")
async def get_calls(warning_id: int, session: SessionDep) -> list[dict[str, Any]]:
    await _warning(session, warning_id)
    return await list_calls(session, warning_id)
