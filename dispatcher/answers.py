"""Turning a reply, a keypress or a tap into an answer, and recording it.

`meaning_of("收到")` -> received; `"2"`/`"求助"` -> help; anything unclear -> None, and the
sender gets a helpful text instead of an error. An answer stops the ladder, cancels the
call's still-queued attempts, and a help answer tells the supervisor at once.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.audit import record
from dispatcher.messages import Renderer
from dispatcher.models import Answer, Attempt, Call, Region, Responder, Warning
from dispatcher.vocabulary import ANSWERABLE_CALL_STATES, AttemptPurpose, AttemptStatus, CallState

RECEIVED_WORDS = {"1", "收到", "已收到", "确认", "ok", "好", "好的", "明白", "y", "yes", "received"}
HELP_WORDS = {"2", "求助", "需要支援", "help"}
_STRIP = re.compile(r"[\s\.,;:!?，。；：！？、~\-…]+")


def meaning_of(raw: str) -> str | None:
    text = unicodedata.normalize("NFKC", raw).strip().lower()
    if not text:
        return None
    first = _STRIP.split(text)[0] or text
    for candidate in (_STRIP.sub("", text), first):
        if candidate in HELP_WORDS or candidate.startswith("求助"):
            return "help"
        if candidate in RECEIVED_WORDS:
            return "received"
    return None


async def record_answer(
    session: AsyncSession,
    *,
    call: Call,
    meaning: str,
    channel: str,
    raw: str,
    now: datetime,
    provider: str | None = None,
    attempt_id: int | None = None,
    notify: list[Attempt],
    renderer: Renderer,
) -> bool:
    """Record one answer for one call; returns whether the call changed state."""
    session.add(
        Answer(
            call_id=call.id,
            responder_id=call.responder_id,
            attempt_id=attempt_id,
            channel=channel,
            provider=provider,
            raw=raw[:500],
            meaning=meaning,
            at=now,
        )
    )
    changed = call.state in ANSWERABLE_CALL_STATES or call.answer_meaning != meaning
    first = call.answered_at is None
    if call.state in ANSWERABLE_CALL_STATES:
        call.state = CallState.ANSWERED
        call.answered_at = now
        call.next_step_at = None
        await session.execute(
            update(Attempt)
            .where(
                Attempt.call_id == call.id,
                Attempt.status == AttemptStatus.QUEUED,
                Attempt.purpose == AttemptPurpose.CALL,
            )
            .values(status=AttemptStatus.CANCELLED, updated_at=now)
        )
    if meaning == "help" and call.answer_meaning != "help":
        notice = await help_notice(session, call, now, renderer)
        if notice is not None:
            notify.append(notice)
    if first or meaning == "help":
        call.answer_meaning = meaning
    record(
        session,
        now,
        "call.answered",
        warning_id=call.warning_id,
        call_id=call.id,
        actor=f"responder:{call.responder_id}",
        detail={"meaning": meaning, "channel": channel},
    )
    return changed


async def help_notice(
    session: AsyncSession, call: Call, now: datetime, renderer: Renderer
) -> Attempt | None:
    from dispatcher.fanout import sms_notice

    responder = await session.get(Responder, call.responder_id)
    if responder is None or responder.supervisor_id is None:
        return None
    warning = await session.get(Warning, call.warning_id)
    region = await session.get(Region, call.region_id)
    body = renderer.render("help_notice", responder=responder, region=region, warning=warning)
    return await sms_notice(
        session,
        to_responder_id=responder.supervisor_id,
        purpose=AttemptPurpose.NOTICE,
        body=body,
        warning_id=call.warning_id,
        call=call,
        now=now,
    )


async def open_calls_of(session: AsyncSession, responder_ids: list[int]) -> list[Call]:
    """Calls these people can still answer (a bare '1' answers all of them)."""
    if not responder_ids:
        return []
    rows = await session.scalars(
        select(Call)
        .join(Warning, Warning.id == Call.warning_id)
        .where(
            Call.responder_id.in_(responder_ids),
            Warning.state == "active",
            Call.state.in_([*ANSWERABLE_CALL_STATES, CallState.ANSWERED]),
        )
        .order_by(Call.id)
        .with_for_update()
    )
    return list(rows)
