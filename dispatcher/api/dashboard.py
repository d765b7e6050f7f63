"""`/dashboard`: the warnings list. Help requests first, then each active and recent
warning with its level, drill marker, answer-rate bar, silent count, open door-knock tasks
and time since issued; the provider circuits and the inbox of texts nobody's call took."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.access import Access, warning_condition
from dispatcher.api.deps import RuntimeDep, SessionDep
from dispatcher.api.session import AccessDep
from dispatcher.api.web import render_page
from dispatcher.figures import people, since_label
from dispatcher.models import Call, Duty, InboxMessage, Responder, Warning
from dispatcher.summary import warning_summary
from dispatcher.vocabulary import Meaning

router = APIRouter(tags=["dashboard"], include_in_schema=False)
RECENT_WARNINGS = 30


async def _inbox(session: AsyncSession, access: Access) -> list[dict[str, Any]]:
    query = (
        select(InboxMessage, Responder.name)
        .outerjoin(Responder, Responder.id == InboxMessage.responder_id)
        .order_by(InboxMessage.id.desc())
        .limit(50)
    )
    ids = access.region_ids()
    if ids is not None:  # a scoped reader sees texts of people on duty in the scope only
        on_duty = select(Duty.responder_id).where(Duty.region_id.in_(ids))
        query = query.where(InboxMessage.responder_id.in_(on_duty))
    rows = (await session.execute(query)).all()
    return [{"message": m, "name": name, "phone": access.phone(m.phone)} for m, name in rows]


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(
    request: Request, session: SessionDep, runtime: RuntimeDep, access: AccessDep
) -> HTMLResponse:
    now = runtime.clock.now()
    circuits = [
        {"channel": c, "provider": p, "state": await runtime.breakers.state(c, p, now)}
        for c, p in runtime.providers.named()
    ]
    warnings = list(
        await session.scalars(
            select(Warning)
            .where(warning_condition(access))
            .order_by((Warning.state == "active").desc(), Warning.id.desc())
            .limit(RECENT_WARNINGS)
        )
    )
    items = []
    help_requests = []
    for warning in warnings:
        if warning.state == "active":
            helpers = await people(session, warning.id, access, Call.answer_meaning == Meaning.HELP)
            help_requests += [{**row, "warning": warning} for row in helpers]
        summary = await warning_summary(session, warning, access)
        calls = summary["calls"]
        items.append(
            {
                "warning": warning,
                "summary": summary,
                "silent": calls["pending"] + calls["escalated"] + calls["unanswered"],
                "since": since_label(warning.received_at, now),
            }
        )
    return render_page(
        request,
        "dashboard.html",
        {
            "items": items,
            "circuits": circuits,
            "help_requests": help_requests,
            "inbox": await _inbox(session, access),
            "live_ids": [w.id for w in warnings if w.state == "active"],
        },
    )
