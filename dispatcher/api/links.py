"""One-tap pages without login: `/a/{token}` answers a call, `/t/{token}` works a task."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from dispatcher.answers import record_answer
from dispatcher.api.deps import RuntimeDep
from dispatcher.api.web import render_page
from dispatcher.audit import record
from dispatcher.models import Call, DoorKnockTask, Region, Warning
from dispatcher.security import read_link_token
from dispatcher.vocabulary import MEANING_LABELS, TASK_STATUS_LABELS, TaskStatus

router = APIRouter(tags=["links"])


def message_page(request: Request, title: str, text: str, status: int) -> HTMLResponse:
    return render_page(request, "message.html", {"title": title, "text": text}, status=status)


# Link previews fetch URLs on their own; they must not answer for a person.
_PREVIEW_AGENTS = ("bot", "preview", "facebookexternalhit", "slack", "whatsapp", "telegram")


async def _answer(runtime: RuntimeDep, request: Request, token: str, meaning: str) -> HTMLResponse:
    call_id = read_link_token(runtime.settings.app.secret_key, "a", token)
    if call_id is None:
        return message_page(request, "链接无效", "该确认链接无效或已损坏。", 404)
    agent = request.headers.get("user-agent", "").lower()
    preview = request.method == "GET" and any(p in agent for p in _PREVIEW_AGENTS)
    async with runtime.db.transaction() as session:
        call = await session.get(Call, call_id, with_for_update=True)
        if call is None:
            return message_page(request, "链接无效", "未找到对应的预警呼叫。", 404)
        warning = await session.get(Warning, call.warning_id)
        notices: list = []
        if not preview and warning is not None and warning.state == "active":
            await record_answer(
                session,
                call=call,
                meaning=meaning,
                channel="link",
                raw=f"{request.method} {meaning}",
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
            "meaning": MEANING_LABELS.get(call.answer_meaning or "", ""),
            "preview": preview,
        }
    await runtime.queue.enqueue_attempts(notice_ids)
    return render_page(request, "answer.html", context)


@router.get("/a/{token}", response_class=HTMLResponse)
async def answer_link(token: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    return await _answer(runtime, request, token, "received")


@router.post("/a/{token}", response_class=HTMLResponse)
async def answer_link_post(
    token: str, request: Request, runtime: RuntimeDep, meaning: str = Form("received")
) -> HTMLResponse:
    if meaning not in MEANING_LABELS:
        return message_page(request, "无效操作", "回复只能是“收到”或“求助”。", 400)
    return await _answer(runtime, request, token, meaning)


@router.api_route("/t/{token}", methods=["GET", "POST"], response_class=HTMLResponse)
async def task_link(token: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    task_id = read_link_token(runtime.settings.app.secret_key, "t", token)
    if task_id is None:
        return message_page(request, "链接无效", "该任务链接无效或已损坏。", 404)
    status_code = 200
    async with runtime.db.transaction() as session:
        task = await session.get(DoorKnockTask, task_id, with_for_update=True)
        if task is None:
            return message_page(request, "链接无效", "未找到该任务。", 404)
        if request.method == "POST":
            form = await request.form()
            status = str(form.get("status", ""))
            if status not in {TaskStatus.ACCEPTED, TaskStatus.DONE, TaskStatus.UNREACHABLE}:
                status_code = 400
            else:
                now = runtime.clock.now()
                task.status, task.updated_at = status, now
                task.notes = str(form.get("notes", ""))[:1000]
                record(
                    session,
                    now,
                    "task.updated",
                    warning_id=task.warning_id,
                    actor=f"responder:{task.assignee_id}",
                    detail={"task": task.id, "status": status},
                )
        region = await session.get(Region, task.region_id)
        warning = await session.get(Warning, task.warning_id)
        context = {
            "task": task,
            "region": region,
            "warning": warning,
            "token": token,
            "status_label": TASK_STATUS_LABELS[task.status],
            "bad": status_code == 400,
        }
    return render_page(request, "task.html", context, status=status_code)
