"""The first dashboard page: warnings, their answer rates and who is still silent."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from dispatcher.api.deps import SessionDep
from dispatcher.api.web import render_page
from dispatcher.models import Call, Contact, Region, Responder, Warning
from dispatcher.phones import mask_phone
from dispatcher.summary import warning_summary
from dispatcher.vocabulary import CallState

router = APIRouter(tags=["dashboard"])
SILENT = (CallState.PENDING, CallState.CALLING, CallState.ESCALATED, CallState.UNANSWERED)


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request, session: SessionDep) -> HTMLResponse:
    items = []
    for warning in await session.scalars(select(Warning).order_by(Warning.id.desc()).limit(20)):
        summary = await warning_summary(session, warning)
        rows = (
            await session.execute(
                select(Call, Responder, Region)
                .join(Responder, Responder.id == Call.responder_id)
                .join(Region, Region.id == Call.region_id)
                .where(Call.warning_id == warning.id, Call.state.in_(SILENT))
                .order_by(Call.escalation_step.desc(), Region.path)
                .limit(200)
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
        silent = [
            {
                "call": c,
                "responder": r,
                "region": g,
                "phone": mask_phone(phones[r.id]) if r.id in phones else "—",
            }
            for c, r, g in rows
        ]
        helpers = (
            await session.execute(
                select(Responder.name, Region.name)
                .join(Call, Call.responder_id == Responder.id)
                .join(Region, Region.id == Call.region_id)
                .where(Call.warning_id == warning.id, Call.answer_meaning == "help")
            )
        ).all()
        items.append({"warning": warning, "summary": summary, "silent": silent, "help": helpers})
    return render_page(request, "dashboard.html", {"items": items})
