"""The warning webhook, the warnings read API and the JSON Schema of a JSON warning.

The webhook is for senders (HMAC-signed, no login); the reads are for logged-in users and
show only what their region scope holds (a warning outside it is a 404).

Every refusal is JSON: `{"detail": <what is wrong>, "field": <JSON path, CAP element path
or null for the whole body>}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from dispatcher.access import warning_condition
from dispatcher.api.deps import RuntimeDep, SessionDep, body_too_large
from dispatcher.api.session import AccessDep, warning_or_404
from dispatcher.cap import WarningIn, WarningRejected
from dispatcher.ingest import ingest
from dispatcher.models import Warning
from dispatcher.security import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureRejected
from dispatcher.summary import list_calls, region_tree, totals, warning_public, warning_summary

router = APIRouter(prefix="/api/v1/warnings", tags=["warnings"])
schema_router = APIRouter(prefix="/api/v1/schema", tags=["warnings"])
SCHEMA_ID = "/api/v1/schema/warning.json"


def warning_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) a JSON warning must meet."""
    schema = WarningIn.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "description": "A warning for POST /api/v1/warnings (Content-Type: application/json): "
        "CAP 1.2's element names, with one info block flattened in.",
    }


@schema_router.get("/warning.json")
async def get_warning_schema() -> JSONResponse:
    return JSONResponse(warning_json_schema(), media_type="application/schema+json")


def refusal(message: str, status: int, field: str | None) -> JSONResponse:
    headers = {"Retry-After": "60"} if status == 429 else None
    return JSONResponse({"detail": message, "field": field}, status_code=status, headers=headers)


@router.post("", status_code=202)
async def post_warning(request: Request, runtime: RuntimeDep) -> JSONResponse:
    body = await request.body()
    if too_large := body_too_large(runtime, body):
        return refusal(too_large, 413, None)
    try:
        result = await ingest(
            runtime,
            body=body,
            content_type=request.headers.get("content-type"),
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            signature=request.headers.get(SIGNATURE_HEADER),
        )
    except SignatureRejected as exc:
        return refusal(exc.message, 401, None)
    except WarningRejected as exc:
        return refusal(exc.message, exc.status, exc.field)
    return JSONResponse(
        {
            "id": result.id,
            "calls": result.calls,
            "broadcasts": result.broadcasts,
            "duplicate": result.duplicate,
            "level": result.level,
            "notes": result.notes,
            "drill": result.drill,
        },
        status_code=202,
    )


@router.get("")
async def get_warnings(
    session: SessionDep, access: AccessDep, drill: bool | None = None
) -> list[dict[str, Any]]:
    """The latest 100 warnings; `drill=false` leaves drills out, `drill=true` lists only them."""
    query = select(Warning).where(warning_condition(access)).order_by(Warning.id.desc()).limit(100)
    if drill is not None:
        query = query.where(Warning.is_drill.is_(drill))
    return [warning_public(w) for w in await session.scalars(query)]


@router.get("/totals")
async def get_totals(session: SessionDep, access: AccessDep, drill: bool = False) -> dict[str, Any]:
    """Calls, answers and door-knock tasks over all real warnings (or, `drill=true`, drills).

    County-wide figures: for admins only."""
    if not access.is_admin:
        raise HTTPException(403, "totals over every region are for admins")
    return await totals(session, drill=drill)


@router.get("/{warning_id}")
async def get_warning(warning_id: int, session: SessionDep, access: AccessDep) -> JSONResponse:
    warning = await warning_or_404(session, access, warning_id)
    summary = await warning_summary(session, warning, access)
    regions = await region_tree(session, warning_id, access)
    # Plain JSON values already: FastAPI's generic encoder would walk a county's every
    # region row again.
    return JSONResponse({**warning_public(warning), **summary, "regions": regions})


@router.get("/{warning_id}/calls")
async def get_calls(
    warning_id: int, session: SessionDep, access: AccessDep
) -> list[dict[str, Any]]:
    await warning_or_404(session, access, warning_id)
    return await list_calls(session, warning_id, access)


@router.get("/{warning_id}/raw")
async def get_raw(warning_id: int, session: SessionDep, access: AccessDep) -> Response:
    """The exact bytes posted, with the content type they came with (audit, re-processing)."""
    warning = await warning_or_404(session, access, warning_id)
    body = warning.raw_body if warning.raw_body is not None else warning.raw_payload.encode()
    media = warning.content_type or (
        "application/json" if warning.source_format == "json" else "application/xml"
    )
    return Response(content=body, media_type=media)
