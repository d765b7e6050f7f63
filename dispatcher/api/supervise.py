"""What supervisors do besides watching: record answers by hand, read the inbox, export.

`POST /api/v1/calls/{id}/answers` (JSON) and the form at `/calls/{id}/manual` record an
answer a supervisor learnt themselves (a phone call, in person): who recorded it and how
are kept, and it is shown apart from answers the responder gave. `GET /api/v1/inbox`
lists texts nobody's open call could take. `GET /api/v1/warnings/{id}/answers.csv` exports
every answer (channel, raw text, time) for the provincial system.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError, model_validator
from sqlalchemy import select

from dispatcher.answers import record_answer
from dispatcher.api.deps import RuntimeDep, SessionDep
from dispatcher.api.web import render_page
from dispatcher.models import Answer, Attempt, Call, InboxMessage, Region, Responder, Warning
from dispatcher.phones import mask_phone
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


async def _record_manual(runtime: RuntimeDep, call_id: int, data: ManualAnswerIn) -> str:
    """Record it; returns the answer's time, or raises HTTPException (404, 409)."""
    notices: list[Attempt] = []
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
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


@router.post("/api/v1/calls/{call_id}/answers", status_code=201)
async def post_manual_answer(
    call_id: int, data: ManualAnswerIn, runtime: RuntimeDep
) -> ManualAnswerPublic:
    at = await _record_manual(runtime, call_id, data)
    return ManualAnswerPublic(
        call_id=call_id,
        status=data.status,
        people=data.people,
        recorded_by=data.recorded_by,
        method=data.method,
        at=at,
    )


async def _form_context(runtime: RuntimeDep, call_id: int) -> dict[str, Any]:
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
    if row is None:
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
async def manual_form(call_id: int, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    return render_page(request, "manual_answer.html", await _form_context(runtime, call_id))


@router.post("/calls/{call_id}/manual", response_class=HTMLResponse)
async def manual_form_post(
    call_id: int,
    request: Request,
    runtime: RuntimeDep,
    status: Annotated[str, Form()] = "",
    people: Annotated[str, Form()] = "",
    recorded_by: Annotated[str, Form()] = "",
    method: Annotated[str, Form()] = "phone",
    note: Annotated[str, Form()] = "",
) -> HTMLResponse:
    context = await _form_context(runtime, call_id)
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
    await _record_manual(runtime, call_id, data)
    context["done"] = True
    return render_page(request, "manual_answer.html", context)


@router.get("/api/v1/inbox")
async def get_inbox(session: SessionDep) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(InboxMessage, Responder.name)
            .outerjoin(Responder, Responder.id == InboxMessage.responder_id)
            .order_by(InboxMessage.id.desc())
            .limit(200)
        )
    ).all()
    return [
        {
            "id": message.id,
            "at": message.at.isoformat(),
            "phone": mask_phone(message.phone),
            "responder": name,
            "text": message.text,
            "reason": message.reason,
        }
        for message, name in rows
    ]


EXPORT_COLUMNS = [
    "warning_id",
    "call_id",
    "responder_id",
    "responder",
    "region_code",
    "region",
    "at",
    "channel",
    "status",
    "people",
    "raw",
    "recorded_by",
    "method",
]


@router.get("/api/v1/warnings/{warning_id}/answers.csv")
async def export_answers(warning_id: int, session: SessionDep) -> Response:
    if await session.get(Warning, warning_id) is None:
        return JSONResponse({"detail": f"no warning {warning_id}"}, status_code=404)
    rows = (
        await session.execute(
            select(Answer, Call, Responder, Region)
            .join(Call, Call.id == Answer.call_id)
            .join(Responder, Responder.id == Answer.responder_id)
            .join(Region, Region.id == Call.region_id)
            .where(Call.warning_id == warning_id)
            .order_by(Answer.at, Answer.id)
        )
    ).all()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for answer, call, responder, region in rows:
        writer.writerow(
            [
                warning_id,
                call.id,
                responder.external_id,
                responder.name,
                region.code,
                region.name,
                answer.at.isoformat(),
                answer.channel,
                answer.meaning,
                "" if answer.people is None else answer.people,
                answer.raw,
                answer.recorded_by or "",
                answer.method or "",
            ]
        )
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="warning-{warning_id}-answers.csv"'},
    )
