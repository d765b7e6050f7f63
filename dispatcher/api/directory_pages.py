"""`/directory/...`: the regions, responders (contacts masked for viewers) and speakers in
the reader's scope, each with a search box (`?q=` matches names, codes, ids)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from dispatcher.access import Access, region_condition
from dispatcher.api.deps import SessionDep
from dispatcher.api.session import AccessDep
from dispatcher.api.web import render_page
from dispatcher.models import Duty, Region, Responder, Speaker
from dispatcher.vocabulary import REGION_LEVELS

router = APIRouter(prefix="/directory", tags=["directory"], include_in_schema=False)
PAGE_ROWS = 200
KINDS = {"regions": "区域", "responders": "责任人", "speakers": "应急广播"}


def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _contact(access: Access, kind: str, value: str) -> str:
    if kind == "phone":
        return access.phone(value)
    return value if access.sees_phones else value[:2] + "***"


async def _regions(session: SessionDep, access: Access, q: str) -> list[dict[str, Any]]:
    query = select(Region).where(access.regions()).order_by(Region.path).limit(PAGE_ROWS)
    if q:
        query = query.where(
            or_(Region.name.like(_like(q), escape="\\"), Region.code.like(_like(q), escape="\\"))
        )
    return [
        {"region": r, "level": REGION_LEVELS.get(r.level, r.level)}
        for r in await session.scalars(query)
    ]


async def _responders(session: SessionDep, access: Access, q: str) -> list[dict[str, Any]]:
    on_duty = select(Duty.responder_id).where(region_condition(Duty.region_id, access))
    query = (
        select(Responder)
        .where(Responder.id.in_(on_duty))
        .options(selectinload(Responder.contacts), selectinload(Responder.duties))
        .order_by(Responder.external_id)
        .limit(PAGE_ROWS)
    )
    if q:
        query = query.where(
            or_(
                Responder.name.like(_like(q), escape="\\"),
                Responder.external_id.like(_like(q), escape="\\"),
            )
        )
    responders = list(await session.scalars(query))
    region_ids = {d.region_id for r in responders for d in r.duties}
    names: dict[int, str] = {
        region_id: name
        for region_id, name in await session.execute(
            select(Region.id, Region.name).where(Region.id.in_(region_ids))
        )
    }
    return [
        {
            "responder": r,
            "regions": [names.get(d.region_id, "") for d in r.duties],
            "contacts": [
                {"kind": c.kind, "shown": _contact(access, c.kind, c.value), "bad": c.bad}
                for c in r.contacts
            ],
        }
        for r in responders
    ]


async def _speakers(session: SessionDep, access: Access, q: str) -> list[dict[str, Any]]:
    query = (
        select(Speaker, Region)
        .join(Region, Region.id == Speaker.region_id)
        .where(access.regions())
        .order_by(Region.path, Speaker.name)
        .limit(PAGE_ROWS)
    )
    if q:
        query = query.where(
            or_(Speaker.name.like(_like(q), escape="\\"), Region.name.like(_like(q), escape="\\"))
        )
    return [{"speaker": s, "region": r} for s, r in (await session.execute(query)).all()]


LISTS = {"regions": _regions, "responders": _responders, "speakers": _speakers}


@router.get("/{kind}", response_class=HTMLResponse)
async def directory_page(
    kind: str, request: Request, session: SessionDep, access: AccessDep, q: str = ""
) -> HTMLResponse:
    if kind not in LISTS:
        raise HTTPException(404, f"no directory list {kind}")
    q = q.strip()[:50]
    rows = await LISTS[kind](session, access, q)
    context = {"kind": kind, "kinds": KINDS, "q": q, "rows": rows, "limit": PAGE_ROWS}
    return render_page(request, "directory.html", context)
