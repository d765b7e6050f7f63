"""What supervisors do besides watching: record answers by hand, read the inbox.

`POST /api/v1/calls/{id}/answers` (JSON) and the form at `/calls/{id}/manual` record an
answer a supervisor learnt themselves (a phone call, in person): who recorded it and how
are kept, and it is shown apart from answers the responder gave. Only admins and
supervisors may, only for calls in their scope, and with the session's CSRF token.
`GET /api/v1/inbox` lists texts nobody's open call could take (exports: `api.exports`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, ValidationError, model_validator
from sqlalchemy import select

from dispatcher.access import Access
from dispatcher.answers import record_answer
from dispatcher.api.deps import RuntimeDep, SessionDep
from dispatcher.api.session import AccessDep, CsrfDep, WriterDep
from dispatcher.api.web import render_page
from dispatcher.models import Attempt, Call, Duty, InboxMessage, Region, Responder, Warning
from dispatcher.replies import MAX_PEOPLE
from dispatcher.vocabulary import ANSWER_METHOD_LABELS, MEANING_LABELS

router = APIRouter(tags=["supervisors"])


class ManualAnswerIn(BaseModel):
    status: Literal["received", "help", "on_duty", "evacuated"]
    people: int | None = Field(None, ge=0, le=MAX_PEOPLE)
    recorded_by: str = Field(min_length=1, max_length=100)
    method: Literal["phone", "in_person", "other"] = "phone"
    note: str = Field("", max_length=1000)

    @model_validator(mode="after")
    def _people_for_evacuated(self) -> ManualAnswerIn:
        if self.status == "evacuated" and self.people is None:
            raise ValueError("people: required when status is evacuated")
        if self.status != "evacuated" and self.people is not None:
            raise ValueError("people: only for status evacuated")
        return self


class ManualAnswerPublic(BaseModel):
    call_id: int
    status: str
    people: int | None
    recorded_by: str
    method: str
    at: str


async def _call_in_scope(session: Any, access: Access, call_id: int) -> bool:
    path = await session.scalar(
        select(Region.path).join(Call, Call.region_id == Region.id).where(Call.id == call_id)
    )
    return path is not None and access.covers(path)


async def _record_manual(
    runtime: RuntimeDep, access: Access, call_id: int, data: ManualAnswerIn
) -> str:
    """Record it; returns the answer's time, or raises HTTPException (404, 409)."""
    notices: list[Attempt] = []
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        if not await _call_in_scope(session, access, call_id):
            raise HTTPException(404, f"no call {call_id}")
        call = await session.get(Call, call_id, with_for_update=True)
        if call is None:
            raise HTTPException(404, f"no call {call_id}")
        warning = await session.get(Warning, call.warning_id)
        if warning is None or warning.state != "active":
            raise HTTPException(409, f"warning of call {call_id} is no longer active")
        await record_answer(
            session,
            call=call,
            meaning=data.status,
            people=data.people,
            channel="manual",
            raw=data.note or MEANING_LABELS[data.status],
            now=now,
            recorded_by=data.recorded_by.strip(),
            method=data.method,
            note=data.note or None,
            notify=notices,
            renderer=runtime.renderer,
        )
        await session.flush()
        ids = [n.id for n in notices]
    await runtime.queue.enqueue_attempts(ids)
    return now.isoformat()


@router.post("/api/v1/calls/{call_id}/answers", status_code=201, dependencies=[CsrfDep])
async def post_manual_answer(
    call_id: int, data: ManualAnswerIn, runtime: RuntimeDep, access: WriterDep
) -> ManualAnswerPublic:
    at = await _record_manual(runtime, access, call_id, data)
    return ManualAnswerPublic(
        call_id=call_id,
        status=data.status,
        people=data.people,
        recorded_by=data.recorded_by,
        method=data.method,
        at=at,
    )


async def _form_context(runtime: RuntimeDep, access: Access, call_id: int) -> dict[str, Any]:
    # Its own short session: on SQLite an open read would hold the lock the write needs.
    async with runtime.db.sessions() as session:
        row = (
            await session.execute(
                select(Call, Responder, Region, Warning)
                .join(Responder, Responder.id == Call.responder_id)
                .join(Region, Region.id == Call.region_id)
                .join(Warning, Warning.id == Call.warning_id)
                .where(Call.id == call_id)
            )
        ).first()
    if row is None or not access.covers(row[2].path):
        raise HTTPException(404, f"no call {call_id}")
    call, responder, region, warning = row
    return {
        "call": call,
        "responder": responder,
        "region": region,
        "warning": warning,
        "meanings": MEANING_LABELS,
        "methods": ANSWER_METHOD_LABELS,
        "problem": "",
        "done": False,
    }


@router.get("/calls/{call_id}/manual", response_class=HTMLResponse)
async def manual_form(
    call_id: int, request: Request, runtime: RuntimeDep, access: WriterDep
) -> HTMLResponse:
    context = await _form_context(runtime, access, call_id)
    return render_page(request, "manual_answer.html", context)


@router.post("/calls/{call_id}/manual", response_class=HTMLResponse, dependencies=[CsrfDep])
async def manual_form_post(
    call_id: int,
    request: Request,
    runtime: RuntimeDep,
    access: WriterDep,
    status: Annotated[str, Form()] = "",
    people: Annotated[str, Form()] = "",
    recorded_by: Annotated[str, Form()] = "",
    method: Annotated[str, Form()] = "phone",
    note: Annotated[str, Form()] = "",
) -> HTMLResponse:
    context = await _form_context(runtime, access, call_id)
    try:
        data = ManualAnswerIn.model_validate(
            {
                "status": status,
                "people": int(people) if people.strip().isdigit() else (people or None),
                "recorded_by": recorded_by,
                "method": method,
                "note": note,
            }
        )
    except ValidationError as error:
        problems = "；".join(str(e["msg"]) for e in error.errors())
        context["problem"] = f"请检查填写内容：{problems}"
        return render_page(request, "manual_answer.html", context, status=400)
    await _record_manual(runtime, access, call_id, data)
    context["done"] = True
    return render_page(request, "manual_answer.html", context)


@router.get("/api/v1/inbox")
async def get_inbox(session: SessionDep, access: AccessDep) -> list[dict[str, Any]]:
    query = (
        select(InboxMessage, Responder.name)
        .outerjoin(Responder, Responder.id == InboxMessage.responder_id)
        .order_by(InboxMessage.id.desc())
        .limit(200)
    )
    ids = access.region_ids()
    if ids is not None:
        query = query.where(
            InboxMessage.responder_id.in_(select(Duty.responder_id).where(Duty.region_id.in_(ids)))
        )
    return [
        {
            "id": message.id,
            "at": message.at.isoformat(),
            "phone": access.phone(message.phone),
            "responder": name,
            "text": message.text,
            "reason": message.reason,
        }
        for message, name in (await session.execute(query)).all()
    ]
