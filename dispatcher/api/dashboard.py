"""The dashboard page: help requests first, then each warning's answers, the silent, the
region tree with evacuated counts, and the inbox of texts nobody's call could take."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.api.deps import RuntimeDep, SessionDep
from dispatcher.api.web import render_page
from dispatcher.models import Call, Contact, InboxMessage, Region, Responder, Warning
from dispatcher.phones import mask_phone
from dispatcher.summary import answer_history, region_tree, warning_summary
from dispatcher.vocabulary import CallState, Meaning, status_label

router = APIRouter(tags=["dashboard"])
SILENT = (CallState.PENDING, CallState.CALLING, CallState.ESCALATED, CallState.UNANSWERED)


async def _people(
    session: AsyncSession, warning_id: int, *conditions: Any, limit: int = 200
) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(Call, Responder, Region)
            .join(Responder, Responder.id == Call.responder_id)
            .join(Region, Region.id == Call.region_id)
            .where(Call.warning_id == warning_id, *conditions)
            .order_by(Call.escalation_step.desc(), Region.path, Call.id)
            .limit(limit)
        )
    ).all()
    phones = dict(
        (
            await session.execute(
                select(Contact.responder_id, Contact.value)
                .where(
                    Contact.kind == "phone",
                    Contact.responder_id.in_([r.id for _, r, _ in rows]),
                )
                .order_by(Contact.position.desc())
            )
        ).all()
    )
    history = await answer_history(session, [c.id for c, _, _ in rows])
    return [
        {
            "call": c,
            "responder": r,
            "region": g,
            "phone": mask_phone(phones[r.id]) if r.id in phones else "—",
            "status": status_label(c.answer_meaning, c.evacuated),
            "history": history.get(c.id, []),
        }
        for c, r, g in rows
    ]


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request, session: SessionDep, runtime: RuntimeDep) -> HTMLResponse:
    now = runtime.clock.now()
    circuits = [
        {"channel": c, "provider": p, "state": await runtime.breakers.state(c, p, now)}
        for c, p in runtime.providers.named()
    ]
    items = []
    help_requests = []
    for warning in await session.scalars(select(Warning).order_by(Warning.id.desc()).limit(20)):
        helpers = await _people(session, warning.id, Call.answer_meaning == Meaning.HELP)
        if warning.state == "active":
            help_requests += [{**row, "warning": warning} for row in helpers]
        items.append(
            {
                "warning": warning,
                "summary": await warning_summary(session, warning),
                "help": helpers,
                "silent": await _people(session, warning.id, Call.state.in_(SILENT)),
                "answered": await _people(
                    session,
                    warning.id,
                    Call.state == CallState.ANSWERED,
                    Call.answer_meaning != Meaning.HELP,
                ),
                "regions": await region_tree(session, warning.id),
            }
        )
    inbox = (
        await session.execute(
            select(InboxMessage, Responder.name)
            .outerjoin(Responder, Responder.id == InboxMessage.responder_id)
            .order_by(InboxMessage.id.desc())
            .limit(50)
        )
    ).all()
    return render_page(
        request,
        "dashboard.html",
        {
            "items": items,
            "circuits": circuits,
            "help_requests": help_requests,
            "inbox": [
                {"message": m, "name": name, "phone": mask_phone(m.phone)} for m, name in inbox
            ],
        },
    )
