"""An SMS from someone: answer their calls, finish their task, or keep it for supervisors.

A bare status (`1`, `3`, `4 12`...) applies to every call the person can still answer; a
code (`1 K7`) picks one. `完成` / `完成 K7` finishes a door-knock task. Whatever cannot be
taken (an unknown number, nothing open, text we do not understand) gets a short polite
text back and is kept in the supervisors' inbox, never dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import InboundText
from dispatcher.answers import open_calls_of, record_answer
from dispatcher.audit import record
from dispatcher.fanout import new_attempt
from dispatcher.models import Attempt, Contact, InboxMessage, Region, Warning
from dispatcher.phones import try_normalize_phone
from dispatcher.replies import Reply, read_reply
from dispatcher.tasks import change_status, open_tasks_of
from dispatcher.vocabulary import AttemptPurpose, TaskStatus, status_label

if TYPE_CHECKING:
    from dispatcher.runtime import Runtime


async def handle_text(
    runtime: Runtime,
    session: AsyncSession,
    event: InboundText,
    provider: str,
    now: datetime,
    to_send: list[Attempt],
) -> None:
    phone = try_normalize_phone(event.sender) or event.sender
    responder_ids = list(
        await session.scalars(
            select(Contact.responder_id).where(Contact.kind == "phone", Contact.value == phone)
        )
    )
    record(
        session,
        now,
        "sms.inbound",
        actor=f"phone:{phone[-4:]}",
        detail={"text": event.text[:200], "known": bool(responder_ids)},
    )
    reply = read_reply(event.text)
    keep: str | None = None
    context: dict[str, object]
    if not responder_ids:
        keep, template, context = "unknown_number", "reply_unknown", {}
    elif reply.done:
        template, context = await _finish_task(session, responder_ids, reply, now)
        keep = "no_open_call" if template == "reply_no_task" else None
    else:
        calls = await open_calls_of(session, responder_ids)
        codes = "、".join(c.code for c in calls if c.code)
        chosen = [c for c in calls if reply.code is None or c.code == reply.code]
        if not calls:
            keep, template, context = "no_open_call", "reply_no_call", {}
        elif reply.meaning is None:
            keep, template = "unclear", "reply_unclear"
            context = {"problem": reply.problem, "codes": codes if len(calls) > 1 else ""}
        elif not chosen:
            keep, template, context = "unclear", "reply_unknown_code", {"code": reply.code}
            context["codes"] = codes
        else:
            for call in chosen:
                await record_answer(
                    session,
                    call=call,
                    meaning=reply.meaning,
                    people=reply.people,
                    channel="sms",
                    raw=event.text,
                    now=now,
                    provider=provider,
                    notify=to_send,
                    renderer=runtime.renderer,
                )
            headlines = await session.scalars(
                select(Warning.headline).where(Warning.id.in_({c.warning_id for c in chosen}))
            )
            template = "reply_thanks"
            context = {
                "meaning": status_label(reply.meaning, reply.people),
                "headlines": "、".join(headlines),
                "others": len(calls) - len(chosen),
            }
    if keep is not None:
        session.add(
            InboxMessage(
                at=now,
                phone=phone,
                responder_id=responder_ids[0] if responder_ids else None,
                text=event.text[:2000],
                reason=keep,
                provider=provider,
            )
        )
    answer = new_attempt(
        call=None,
        warning_id=None,
        responder_id=responder_ids[0] if responder_ids else None,
        purpose=AttemptPurpose.REPLY,
        channel="sms",
        address=phone,
        now=now,
        body=runtime.renderer.render(template, **context),
    )
    session.add(answer)
    to_send.append(answer)


async def _finish_task(
    session: AsyncSession, responder_ids: list[int], reply: Reply, now: datetime
) -> tuple[str, dict[str, object]]:
    tasks = await open_tasks_of(session, responder_ids)
    chosen = [t for t in tasks if reply.code is None or t.code == reply.code]
    if not tasks:
        return "reply_no_task", {}
    if len(chosen) != 1:
        return "reply_task_which", {"codes": "、".join(t.code or "" for t in tasks)}
    task = chosen[0]
    await change_status(
        session, task, status=TaskStatus.DONE, now=now, actor=f"responder:{task.assignee_id}"
    )
    region = await session.get(Region, task.region_id)
    return "reply_task_done", {"region": region.name if region else "", "code": task.code}
