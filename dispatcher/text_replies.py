"""An SMS from someone: answer their calls, finish their task, or keep it for supervisors.

A bare status (`1`, `3`, `4 12`...) applies to every call the person can still answer; a
code (`1 K7`) picks one. `完成` / `完成 K7` finishes a door-knock task. Whatever cannot be
taken (an unknown number, nothing open, text we do not understand) gets a short polite
text back and is kept in the supervisors' inbox, never dropped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import InboundText
from dispatcher.answers import AnswerRows, open_calls_of, record_answer
from dispatcher.audit import audit_row
from dispatcher.bulk import ids_value, in_ids_param, insert_columns
from dispatcher.fanout import attempt_row
from dispatcher.models import Attempt, Call, Contact, InboxMessage, Region, table_of
from dispatcher.phones import try_normalize_phone
from dispatcher.replies import Reply, read_reply
from dispatcher.seen_texts import Text, first_seen
from dispatcher.tasks import change_status, open_tasks_of
from dispatcher.vocabulary import AttemptPurpose, TaskStatus, status_label

if TYPE_CHECKING:
    from dispatcher.runtime import Runtime


async def handle_texts(
    runtime: Runtime,
    session: AsyncSession,
    texts: Sequence[Text],
    now: datetime,
) -> list[int]:
    """Take texts in the order they came, as if one after another, in the caller's
    transaction; returns the ids of the attempts to enqueue (replies, help notices).

    Their senders and open calls are looked up (and locked) together, and the answers,
    audit events and replies written together: a burst of replies costs a few statements
    per batch, not a few per reply. A text its provider posted before is left out
    (`dispatcher.seen_texts`)."""
    texts = await first_seen(session, texts, now)
    if not texts:
        return []
    phones = [try_normalize_phone(event.sender) or event.sender for event, _ in texts]
    readings = [read_reply(event.text) for event, _ in texts]
    senders = await responders_by_phone(session, phones)
    answering = {
        r
        for phone, reply in zip(phones, readings, strict=True)
        if not reply.done
        for r in senders.get(phone, [])
    }
    open_calls = await open_calls_of(session, sorted(answering))
    calls_of: dict[int, list[Call]] = defaultdict(list)
    headlines: dict[int, str] = {}
    for call, headline in open_calls.calls:
        calls_of[call.responder_id].append(call)
        headlines[call.warning_id] = headline
    answered = Answered()
    answered.rows.queued = open_calls.queued
    replies: list[tuple[str, int | None, str, dict[str, object]]] = []
    for (event, provider), phone, reply in zip(texts, phones, readings, strict=True):
        responder_ids = senders.get(phone, [])
        calls = sorted((c for r in responder_ids for c in calls_of.get(r, [])), key=_call_id)
        template, context, keep = await _take_text(
            runtime, session, event, provider, phone, reply, responder_ids, calls, now, answered
        )
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
        replies.append((phone, responder_ids[0] if responder_ids else None, template, context))
    await answered.rows.write(session, now)
    for context, warning_ids in answered.thanks:
        context["headlines"] = "、".join(headlines[w] for w in sorted(warning_ids))
    # A burst's replies are mostly the same few texts: each is rendered once.
    bodies: dict[tuple[str, tuple[tuple[str, object], ...]], str] = {}
    texts_of: list[object] = []
    for _, _, template, context in replies:
        key = (template, tuple(sorted(context.items())))
        if key not in bodies:
            bodies[key] = runtime.renderer.render(template, **context)
        texts_of.append(bodies[key])
    columns: dict[str, list[object]] = {
        "responder_id": [responder_id for _, responder_id, _, _ in replies],
        "address": [phone for phone, _, _, _ in replies],
        "body": texts_of,
    }
    await session.flush()
    reply_ids = await insert_columns(
        session, table_of(Attempt), columns, reply_constants(now), returning="id"
    )
    return [notice.id for notice in answered.notices] + sorted(reply_ids)


def reply_constants(now: datetime) -> dict[str, object]:
    """What every reply text queued by a batch has in common (all but its recipient).
    They count as enqueued when written: the batcher enqueues them once they commit."""
    row = attempt_row(
        call_id=None,
        warning_id=None,
        responder_id=None,
        purpose=AttemptPurpose.REPLY,
        channel="sms",
        address="",
        now=now,
    )
    for varying in ("responder_id", "address", "body"):
        del row[varying]
    return {**row, "enqueued_at": now}


async def responders_by_phone(session: AsyncSession, phones: Sequence[str]) -> dict[str, list[int]]:
    """phone -> the responders with that number (a shared phone answers for all of them)."""
    found: dict[str, list[int]] = defaultdict(list)
    if not phones:
        return found
    statement = _phone_statement(session.get_bind().dialect.name == "postgresql")
    rows = await session.execute(statement, {"phones": ids_value(session, sorted(set(phones)))})
    for phone, responder_id in rows:
        if responder_id not in found[phone]:
            found[phone].append(responder_id)
    return found


@cache
def _phone_statement(postgresql: bool) -> Select[str, int]:
    """`responders_by_phone`'s statement, built once per back end (every batch runs it)."""
    return (
        select(Contact.value, Contact.responder_id)
        .where(Contact.kind == "phone", in_ids_param(Contact.value, "phones", postgresql))
        .order_by(Contact.id)
    )


@dataclass
class Answered:
    """What answering texts leaves for the end of the batch."""

    # The answers and audit events, written together.
    rows: AnswerRows = field(default_factory=AnswerRows)
    # Help notices, to enqueue with the replies.
    notices: list[Attempt] = field(default_factory=list)
    # Each thank-you's context and the warnings it answered, whose headlines it names.
    thanks: list[tuple[dict[str, object], set[int]]] = field(default_factory=list)


def _call_id(call: Call) -> int:
    return call.id


def _chosen(call: Call, reply: Reply) -> bool:
    return reply.code is None or call.code == reply.code


async def _take_text(
    runtime: Runtime,
    session: AsyncSession,
    event: InboundText,
    provider: str,
    phone: str,
    reply: Reply,
    responder_ids: list[int],
    calls: list[Call],
    now: datetime,
    answered: Answered,
) -> tuple[str, dict[str, object], str | None]:
    """Apply one text: (the reply's template, its context, why it is kept, if it is)."""
    answered.rows.audit.append(
        audit_row(
            now,
            "sms.inbound",
            actor=f"phone:{phone[-4:]}",
            detail={"text": event.text[:200], "known": bool(responder_ids)},
        )
    )
    if not responder_ids:
        return "reply_unknown", {}, "unknown_number"
    if reply.done:
        await answered.rows.write(session, now)  # the text on record before what it did
        template, done = await _finish_task(session, responder_ids, reply, now)
        return template, done, "no_open_call" if template == "reply_no_task" else None
    codes = "、".join(c.code for c in calls if c.code)
    chosen = [c for c in calls if _chosen(c, reply)]
    if not calls:
        return "reply_no_call", {}, "no_open_call"
    if reply.meaning is None:
        unclear: dict[str, object] = {
            "problem": reply.problem,
            "codes": codes if len(calls) > 1 else "",
        }
        return "reply_unclear", unclear, "unclear"
    if not chosen:
        return "reply_unknown_code", {"code": reply.code, "codes": codes}, "unclear"
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
            notify=answered.notices,
            renderer=runtime.renderer,
            rows=answered.rows,
        )
    context: dict[str, object] = {
        "meaning": status_label(reply.meaning, reply.people),
        "others": len(calls) - len(chosen),
    }
    answered.thanks.append((context, {c.warning_id for c in chosen}))
    return "reply_thanks", context, None


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
