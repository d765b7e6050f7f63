"""Provider callbacks turned into state: receipts update attempts, replies answer calls.

`process_callback` is the one path for every callback, whether it came over HTTP or
from a simulated provider's scheduled job: the provider parses and verifies it into
events, and each event is applied here. Replies from unknown numbers, or with nothing
to answer, get a polite text back, never an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import (
    CallbackRejected,
    CallbackReply,
    CallbackRequest,
    CallbackResponse,
    DeliveryReport,
    DirectReply,
    Event,
    Handshake,
    InboundText,
    PlaybackReport,
    Provider,
    SendError,
)
from dispatcher.answers import record_answer
from dispatcher.doorknock import open_speaker_task
from dispatcher.fanout import mark_contact_bad, new_attempt
from dispatcher.ladder import note_delivery
from dispatcher.models import Attempt, Broadcast, Call, Warning
from dispatcher.runtime import Runtime
from dispatcher.text_replies import handle_texts
from dispatcher.vocabulary import (
    OPEN_CALL_STATES,
    AttemptPurpose,
    AttemptStatus,
    BroadcastStatus,
    status_label,
)

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
# Keypress that asks to hear the message again.
REPLAY_KEY = "9"
# Receipts that end an attempt without reaching the person.
UNREACHED = {AttemptStatus.FAILED, AttemptStatus.NO_ANSWER, AttemptStatus.BUSY}
FINAL = {AttemptStatus.DELIVERED, *UNREACHED}


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
    for event in events:
        if isinstance(event, Handshake):
            return CallbackResponse(body=event.answer)
    applied = await apply_events(runtime, events, provider_name)
    if applied.unmatched and raise_unmatched:
        raise UnmatchedCallback(f"{applied.unmatched} event(s) refer to messages not yet recorded")
    if provider.flags.confirms_answers:
        for reply, meaning in applied.answered:
            await _confirm(runtime, provider, reply, meaning)
    return provider.callback_response(applied.reply)


async def _confirm(runtime: Runtime, provider: Provider, reply: DirectReply, meaning: str) -> None:
    """Show the recorded answer on the card; the answer stands whether or not this works."""
    label = runtime.renderer.render("card_answered", meaning=meaning, label=status_label(meaning))
    try:
        await provider.confirm_answer(reply, label)
    except SendError as exc:
        log.warning("%s could not mark the card answered: %s", provider.name, exc.message)
    except Exception:
        log.exception("%s failed marking the card answered", provider.name)


class UnmatchedCallback(Exception):
    """A callback arrived before the send it reports on was committed; try it again."""


@dataclass
class Applied:
    # Events that refer to a message we do not know (yet).
    unmatched: int = 0
    # What to say back on a live call after a keypress.
    reply: CallbackReply | None = None
    # Taps and keypresses recorded as answers, with their meaning.
    answered: list[tuple[DirectReply, str]] = field(default_factory=list)


async def apply_events(runtime: Runtime, events: list[Event], provider: str) -> Applied:
    """Apply events in one transaction, then enqueue the texts they call for.

    A callback of nothing but texts (an SMS reply) is recorded together with the other
    replies arriving at the same time (`dispatcher.reply_batches`).
    """
    applied = Applied()
    texts = [(event, provider) for event in events if isinstance(event, InboundText)]
    if texts and len(texts) == len(events):
        await runtime.replies.record(runtime, texts)
        return applied
    to_send: list[Attempt] = []
    text_ids: list[int] = []
    async with runtime.db.transaction() as session:
        now = runtime.clock.now()
        for event in events:
            if isinstance(event, DeliveryReport):
                found_delivery = await _on_delivery(runtime, session, event, provider, now, to_send)
                applied.unmatched += not found_delivery
            elif isinstance(event, InboundText):
                text_ids += await handle_texts(runtime, session, [(event, provider)], now)
            elif isinstance(event, DirectReply):
                found = await _on_direct(runtime, session, event, provider, now, to_send)
                applied.unmatched += found is None
                applied.reply = found or applied.reply
                # An answer was recorded: a known key and something said back for it.
                if found is not None and found.say and event.value in KEYPRESS:
                    applied.answered.append((event, KEYPRESS[event.value]))
            elif isinstance(event, PlaybackReport):
                applied.unmatched += not await _on_playback(runtime, session, event, provider, now)
        await session.flush()
        ids = [a.id for a in to_send] + text_ids
    await runtime.queue.enqueue_attempts(ids)
    return applied


async def _attempt_by_ref(session: AsyncSession, provider: str, ref: str) -> Attempt | None:
    return await session.scalar(
        select(Attempt).where(Attempt.provider == provider, Attempt.provider_message_id == ref)
    )


async def _on_delivery(
    runtime: Runtime,
    session: AsyncSession,
    event: DeliveryReport,
    provider: str,
    now: datetime,
    to_send: list[Attempt],
) -> bool:
    attempt = await _attempt_by_ref(session, provider, event.provider_message_id)
    if attempt is None:
        log.warning("delivery report for unknown message from %s", provider)
        return False
    if event.status == AttemptStatus.SENT and attempt.status in FINAL:
        return True  # receipts can arrive out of order: a late "sent" changes nothing
    attempt.status, attempt.updated_at, attempt.reported_at = event.status, now, now
    attempt.provider_status = (event.provider_status or event.status)[:32]
    attempt.error_code = event.error_code or attempt.error_code
    attempt.error_message = event.error_message or attempt.error_message
    if event.status in (AttemptStatus.SENT, AttemptStatus.DELIVERED):
        await note_delivery(session, runtime.settings, attempt, now)
    if event.status not in UNREACHED:
        return True
    if attempt.call_id is not None:
        # Lock order: attempt, call, contacts (see sending._store_result).
        await session.get(Call, attempt.call_id, with_for_update=True)
    if event.contact_bad:
        await mark_contact_bad(session, attempt.address)
    if event.other_provider:
        retry = await _try_other_provider(session, attempt, provider, now)
        if retry is not None:
            to_send.append(retry)
    # A call nothing can reach any more is taken up by the sweep (undeliverable calls).
    return True


async def _try_other_provider(
    session: AsyncSession, attempt: Attempt, provider: str, now: datetime
) -> Attempt | None:
    """The provider refused this message after accepting it: queue it for the next one."""
    if attempt.call_id is not None:
        call = await session.get(Call, attempt.call_id)
        if call is None or call.state not in OPEN_CALL_STATES:
            return None
    skip = set(filter(None, (attempt.skip_providers or "").split(","))) | {provider}
    retry = new_attempt(
        call=None,
        warning_id=attempt.warning_id,
        responder_id=attempt.responder_id,
        purpose=attempt.purpose,
        channel=attempt.channel,
        address=attempt.address,
        now=now,
        body=attempt.body if attempt.purpose != AttemptPurpose.CALL else None,
        try_number=attempt.try_number,
    )
    retry.call_id, retry.skip_providers = attempt.call_id, ",".join(sorted(skip))
    session.add(retry)
    return retry


async def _on_direct(
    runtime: Runtime,
    session: AsyncSession,
    event: DirectReply,
    provider: str,
    now: datetime,
    to_send: list[Attempt],
) -> CallbackReply | None:
    """Answer the call the keypress or tap was given on; None if that message is unknown."""
    attempt = await _attempt_by_ref(session, provider, event.provider_message_id)
    meaning = KEYPRESS.get(event.value)
    if attempt is None or attempt.call_id is None:
        log.warning("%s from %s for unknown message", event.kind, provider)
        return None
    if meaning is None:
        log.info("%s %r from %s is no answer", event.kind, event.value, provider)
        template = "keypress_replay" if event.value == REPLAY_KEY else "keypress_unknown"
        return CallbackReply(say=runtime.renderer.render(template), replay=attempt.body or "")
    call = await session.get(Call, attempt.call_id, with_for_update=True)
    assert call is not None
    warning = await session.get(Warning, call.warning_id)
    if warning is None or warning.state != "active":
        log.info("%s for call %s of a warning no longer active; ignored", event.kind, call.id)
        return CallbackReply()
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
    return CallbackReply(say=runtime.renderer.render(f"keypress_{meaning}"))


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
