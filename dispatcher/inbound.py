"""Provider callbacks turned into state: receipts update attempts, replies answer calls.

`process_callback` is the one path for every callback, whether it came over HTTP or
from a simulated provider's scheduled job: the provider parses and verifies it into
events, and each event is applied here. Replies from unknown numbers, or with nothing
to answer, get a polite text back, never an error.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import (
    CallbackRejected,
    CallbackRequest,
    CallbackResponse,
    DeliveryReport,
    DirectReply,
    Event,
    InboundText,
    PlaybackReport,
)
from dispatcher.answers import meaning_of, open_calls_of, record_answer
from dispatcher.audit import record
from dispatcher.doorknock import open_speaker_task
from dispatcher.fanout import new_attempt
from dispatcher.models import Attempt, Broadcast, Call, Contact, Warning
from dispatcher.phones import try_normalize_phone
from dispatcher.runtime import Runtime
from dispatcher.vocabulary import MEANING_LABELS, AttemptPurpose, BroadcastStatus

log = logging.getLogger(__name__)
KEYPRESS = {"1": "received", "2": "help", "received": "received", "help": "help"}


async def process_callback(
    runtime: Runtime,
    channel: str,
    provider_name: str,
    request: CallbackRequest,
    *,
    raise_unmatched: bool = False,
) -> CallbackResponse:
    provider = runtime.providers.get(channel, provider_name)
    if provider is None:
        raise CallbackRejected(f"no provider {provider_name!r} on channel {channel!r}", 404)
    events = provider.parse_callback(request)
    unmatched = await apply_events(runtime, events, provider_name)
    if unmatched and raise_unmatched:
        raise UnmatchedCallback(f"{unmatched} event(s) refer to messages not yet recorded")
    return provider.callback_response()


class UnmatchedCallback(Exception):
    """A callback arrived before the send it reports on was committed; try it again."""


async def apply_events(runtime: Runtime, events: list[Event], provider: str) -> int:
    """Apply events; returns how many referred to a message we do not know (yet)."""
    to_send: list[Attempt] = []
    unmatched = 0
    async with runtime.db.transaction() as session:
        now = runtime.clock.now()
        for event in events:
            if isinstance(event, DeliveryReport):
                unmatched += not await _on_delivery(session, event, provider, now)
            elif isinstance(event, InboundText):
                await _on_text(runtime, session, event, provider, now, to_send)
            elif isinstance(event, DirectReply):
                unmatched += not await _on_direct(runtime, session, event, provider, now, to_send)
            elif isinstance(event, PlaybackReport):
                unmatched += not await _on_playback(runtime, session, event, provider, now)
        await session.flush()
        ids = [a.id for a in to_send]
    await runtime.queue.enqueue_attempts(ids)
    return unmatched


async def _attempt_by_ref(session: AsyncSession, provider: str, ref: str) -> Attempt | None:
    return await session.scalar(
        select(Attempt).where(Attempt.provider == provider, Attempt.provider_message_id == ref)
    )


async def _on_delivery(
    session: AsyncSession, event: DeliveryReport, provider: str, now: datetime
) -> bool:
    attempt = await _attempt_by_ref(session, provider, event.provider_message_id)
    if attempt is None:
        log.warning("delivery report for unknown message from %s", provider)
        return False
    attempt.status, attempt.updated_at = event.status, now
    attempt.error_code = event.error_code or attempt.error_code
    attempt.error_message = event.error_message or attempt.error_message
    return True


async def _on_direct(
    runtime: Runtime,
    session: AsyncSession,
    event: DirectReply,
    provider: str,
    now: datetime,
    to_send: list[Attempt],
) -> bool:
    attempt = await _attempt_by_ref(session, provider, event.provider_message_id)
    meaning = KEYPRESS.get(event.value)
    if attempt is None or attempt.call_id is None:
        log.warning("%s from %s for unknown message", event.kind, provider)
        return False
    if meaning is None:
        log.info("%s %r from %s means nothing; ignored", event.kind, event.value, provider)
        return True
    call = await session.get(Call, attempt.call_id, with_for_update=True)
    assert call is not None
    await record_answer(
        session,
        call=call,
        meaning=meaning,
        channel=attempt.channel,
        raw=event.value,
        now=now,
        provider=provider,
        attempt_id=attempt.id,
        notify=to_send,
        renderer=runtime.renderer,
    )
    return True


async def _on_text(
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
    meaning = meaning_of(event.text)
    calls = await open_calls_of(session, responder_ids)
    if not responder_ids:
        context: dict[str, str] = {}
        template = "reply_unknown"
    elif not calls:
        template, context = "reply_no_call", {}
    elif meaning is None:
        template, context = "reply_unclear", {}
    else:
        for call in calls:
            await record_answer(
                session,
                call=call,
                meaning=meaning,
                channel="sms",
                raw=event.text,
                now=now,
                provider=provider,
                notify=to_send,
                renderer=runtime.renderer,
            )
        warnings = await session.scalars(
            select(Warning.headline).where(Warning.id.in_({c.warning_id for c in calls}))
        )
        template = "reply_thanks"
        context = {"meaning": MEANING_LABELS[meaning], "headlines": "、".join(warnings)}
    reply = new_attempt(
        call=None,
        warning_id=None,
        responder_id=responder_ids[0] if responder_ids else None,
        purpose=AttemptPurpose.REPLY,
        channel="sms",
        address=phone,
        now=now,
        body=runtime.renderer.render(template, **context),
    )
    session.add(reply)
    to_send.append(reply)


async def _on_playback(
    runtime: Runtime, session: AsyncSession, event: PlaybackReport, provider: str, now: datetime
) -> bool:
    broadcast = await session.scalar(
        select(Broadcast).where(
            Broadcast.provider == provider,
            Broadcast.provider_message_id == event.provider_message_id,
        )
    )
    if broadcast is None:
        log.warning("playback report for unknown broadcast from %s", provider)
        return False
    broadcast.reported_at = now
    if event.played:
        broadcast.status = BroadcastStatus.PLAYED
        return True
    broadcast.status, broadcast.error_message = BroadcastStatus.FAILED, event.error_message
    await open_speaker_task(runtime, session, broadcast, now)
    return True
