"""One-tap pages without login: `/a/{token}` answers a call, `/t/{token}` works a task."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.answers import record_answer
from dispatcher.api.deps import RuntimeDep
from dispatcher.api.web import render_page
from dispatcher.doorknock import households_in
from dispatcher.lifecycle import carried_call
from dispatcher.models import (
    Attempt,
    Call,
    DoorKnockTask,
    Region,
    Responder,
    TaskHousehold,
    Warning,
)
from dispatcher.replies import MAX_PEOPLE
from dispatcher.security import read_link_token
from dispatcher.tasks import TaskRefused, change_status, mark_household
from dispatcher.vocabulary import (
    CALL_STATE_LABELS,
    HOUSEHOLD_MARK_LABELS,
    MEANING_LABELS,
    TASK_STATUS_LABELS,
    Meaning,
    status_label,
)

router = APIRouter(tags=["links"])


def message_page(request: Request, title: str, text: str, status: int) -> HTMLResponse:
    return render_page(request, "message.html", {"title": title, "text": text}, status=status)


# Link previews fetch URLs on their own; they must not answer for a person.
_PREVIEW_AGENTS = ("bot", "preview", "facebookexternalhit", "slack", "whatsapp", "telegram")


async def _answer(
    runtime: RuntimeDep, request: Request, token: str, meaning: str, people: int | None = None
) -> HTMLResponse:
    call_id = read_link_token(runtime.settings.app.secret_key, "a", token)
    if call_id is None:
        return message_page(request, "链接无效", "该确认链接无效或已损坏。", 404)
    agent = request.headers.get("user-agent", "").lower()
    preview = request.method == "GET" and any(p in agent for p in _PREVIEW_AGENTS)
    async with runtime.db.transaction() as session:
        call = await session.get(Call, call_id, with_for_update=True)
        if call is None:
            return message_page(request, "链接无效", "未找到对应的预警呼叫。", 404)
        call = await carried_call(session, call)  # a tap on the link sent before an Update
        warning = await session.get(Warning, call.warning_id)
        notices: list[Attempt] = []
        # A GET only confirms receipt once; it never overwrites a later status.
        repeat_get = request.method == "GET" and call.answer_meaning is not None
        if not preview and not repeat_get and warning is not None and warning.state == "active":
            await record_answer(
                session,
                call=call,
                meaning=meaning,
                people=people,
                channel="link",
                raw=f"{request.method} {meaning}" + (f" {people}" if people is not None else ""),
                now=runtime.clock.now(),
                notify=notices,
                renderer=runtime.renderer,
            )
        await session.flush()
        notice_ids = [n.id for n in notices]
        context = {
            "warning": warning,
            "call": call,
            "token": token,
            "meaning": status_label(call.answer_meaning, call.evacuated),
            "preview": preview,
        }
    await runtime.queue.enqueue_attempts(notice_ids)
    return render_page(request, "answer.html", context)


@router.get("/a/{token}", response_class=HTMLResponse)
async def answer_link(token: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    return await _answer(runtime, request, token, Meaning.RECEIVED)


@router.post("/a/{token}", response_class=HTMLResponse)
async def answer_link_post(
    token: str,
    request: Request,
    runtime: RuntimeDep,
    meaning: str = Form("received"),
    people: str = Form(""),
) -> HTMLResponse:
    if meaning not in MEANING_LABELS:
        return message_page(request, "无效操作", "回复只能是收到、求助、已部署或已转移。", 400)
    count = None
    if meaning == Meaning.EVACUATED:
        if not people.strip().isdigit() or int(people) > MAX_PEOPLE:
            return message_page(request, "请填写人数", "报告已转移时请填写转移人数（整数）。", 400)
        count = int(people)
    return await _answer(runtime, request, token, meaning, count)


@router.api_route("/t/{token}", methods=["GET", "POST"], response_class=HTMLResponse)
async def task_link(token: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    task_id = read_link_token(runtime.settings.app.secret_key, "t", token)
    if task_id is None:
        return message_page(request, "链接无效", "该任务链接无效或已损坏。", 404)
    status_code, problem = 200, ""
    async with runtime.db.transaction() as session:
        task = await session.get(DoorKnockTask, task_id, with_for_update=True)
        if task is None:
            return message_page(request, "链接无效", "未找到该任务。", 404)
        if request.method == "POST":
            form = await request.form()
            now, actor = runtime.clock.now(), f"task-link:{task.assignee_id}"
            notes = str(form["notes"]) if "notes" in form else None
            try:
                if "household" in form:
                    household = str(form.get("household", ""))
                    if not household.isdigit():
                        raise TaskRefused("无效的住户。")
                    await mark_household(
                        session,
                        task,
                        household_id=int(household),
                        mark=str(form.get("mark", "")),
                        now=now,
                        actor=actor,
                    )
                else:
                    await change_status(
                        session,
                        task,
                        status=str(form.get("status", "")),
                        now=now,
                        actor=actor,
                        notes=notes,
                    )
            except TaskRefused as refused:
                status_code, problem = 400, str(refused)
        context = await _task_context(session, task)
    return render_page(
        request, "task.html", {**context, "token": token, "problem": problem}, status=status_code
    )


async def _task_context(session: AsyncSession, task: DoorKnockTask) -> dict[str, Any]:
    region = await session.get(Region, task.region_id)
    warning = await session.get(Warning, task.warning_id)
    silent = (
        await session.execute(
            select(Call, Responder)
            .join(Responder, Responder.id == Call.responder_id)
            .where(Call.door_knock_task_id == task.id)
            .order_by(Call.id)
        )
    ).all()
    marks = dict(
        (
            await session.execute(
                select(TaskHousehold.household_id, TaskHousehold.mark).where(
                    TaskHousehold.task_id == task.id
                )
            )
        ).all()
    )
    assert region is not None
    households = await households_in(session, region)
    return {
        "task": task,
        "region": region,
        "warning": warning,
        "status_label": TASK_STATUS_LABELS[task.status],
        "silent": [
            {
                "name": responder.name,
                "state": CALL_STATE_LABELS.get(call.state, call.state),
                "status": status_label(call.answer_meaning, call.evacuated),
            }
            for call, responder in silent
        ],
        "households": [{"row": h, "mark": marks.get(h.id)} for h in households],
        "mark_labels": HOUSEHOLD_MARK_LABELS,
        "open": task.status in ("open", "accepted"),
    }
