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
from dispatcher.answers import record_answer
from dispatcher.doorknock import open_speaker_task
from dispatcher.ladder import note_delivery
from dispatcher.models import Attempt, Broadcast, Call, Warning
from dispatcher.runtime import Runtime
from dispatcher.text_replies import handle_text
from dispatcher.vocabulary import AttemptStatus, BroadcastStatus

log = logging.getLogger(__name__)
# Keypresses on a robocall and buttons on a WeCom card.
KEYPRESS = {
    "1": "received",
    "2": "help",
    "3": "on_duty",
    "received": "received",
    "help": "help",
    "on_duty": "on_duty",
}


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
                unmatched += not await _on_delivery(runtime, session, event, provider, now)
            elif isinstance(event, InboundText):
                await handle_text(runtime, session, event, provider, now, to_send)
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
    runtime: Runtime, session: AsyncSession, event: DeliveryReport, provider: str, now: datetime
) -> bool:
    attempt = await _attempt_by_ref(session, provider, event.provider_message_id)
    if attempt is None:
        log.warning("delivery report for unknown message from %s", provider)
        return False
    attempt.status, attempt.updated_at = event.status, now
    attempt.error_code = event.error_code or attempt.error_code
    attempt.error_message = event.error_message or attempt.error_message
    if event.status in (AttemptStatus.SENT, AttemptStatus.DELIVERED):
        await note_delivery(session, runtime.settings, attempt, now)
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
    warning = await session.get(Warning, call.warning_id)
    if warning is None or warning.state != "active":
        log.info("%s for call %s of a warning no longer active; ignored", event.kind, call.id)
        return True
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
