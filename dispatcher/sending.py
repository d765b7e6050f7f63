"""The send jobs: one attempt or one broadcast handed to its channel's provider.

A job claims its row (queued -> sending) so a duplicate job does nothing, renders the
message, sends it outside any transaction, then records the result. A retryable error
schedules a new attempt with exponential backoff, which the sweep enqueues when due.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from sqlalchemy import select, update

from channels.base import Channel, Message, SendError
from dispatcher.audit import record
from dispatcher.fanout import new_attempt
from dispatcher.ladder import note_delivery
from dispatcher.messages import call_template
from dispatcher.models import Attempt, Broadcast, Call, Contact, Speaker, Warning
from dispatcher.runtime import Runtime
from dispatcher.security import make_link_token
from dispatcher.vocabulary import (
    ANSWERABLE_CALL_STATES,
    AttemptPurpose,
    AttemptStatus,
    BroadcastStatus,
    CallState,
)

log = logging.getLogger(__name__)


def answer_url(runtime: Runtime, call_id: int) -> str:
    token = make_link_token(runtime.settings.app.secret_key, "a", call_id)
    return f"{runtime.settings.app.public_base_url.rstrip('/')}/a/{token}"


async def _claim_attempt(runtime: Runtime, attempt_id: int) -> Message | None:
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        attempt = await session.get(Attempt, attempt_id, with_for_update=True)
        if attempt is None or attempt.status != AttemptStatus.QUEUED or attempt.due_at > now:
            return None
        call = await session.get(Call, attempt.call_id) if attempt.call_id else None
        if attempt.purpose == AttemptPurpose.CALL and (
            call is None or call.state not in ANSWERABLE_CALL_STATES or call.answered_at
        ):
            attempt.status, attempt.updated_at = AttemptStatus.SKIPPED, now
            return None
        body = attempt.body
        if call is not None and attempt.purpose == AttemptPurpose.CALL:
            warning = await session.get(Warning, call.warning_id)
            policy = runtime.settings.policy_for(warning.level)  # type: ignore[union-attr]
            body = runtime.renderer.render(
                call_template(attempt.channel, call.previous_call_id),
                warning=warning,
                minutes=int(policy.answer_within_min),
                answer_url=answer_url(runtime, call.id),
                code=call.code,
            )
            attempt.body = body
            if call.state == CallState.PENDING:
                call.state = CallState.CALLING
        attempt.status, attempt.updated_at = AttemptStatus.SENDING, now
        return Message(
            channel=Channel(attempt.channel),
            to=attempt.address,
            text=body or "",
            reference=f"attempt:{attempt.id}",
            recipient_key=f"responder:{attempt.responder_id}",
            answer_url=answer_url(runtime, call.id) if call else None,
            expects_answer=attempt.purpose == AttemptPurpose.CALL,
            repeat=2 if attempt.channel == "voice" else 1,
        )


async def send_attempt(runtime: Runtime, attempt_id: int) -> str:
    message = await _claim_attempt(runtime, attempt_id)
    if message is None:
        return "skipped"
    provider = runtime.providers.first(message.channel.value)
    error: SendError | None = None
    provider_id = None
    if provider is None:
        error = SendError(f"no provider configured for {message.channel.value}")
    else:
        try:
            provider_id = (await provider.send(message)).provider_message_id
        except SendError as exc:
            error = exc
        except Exception as exc:  # an unexpected provider failure must not lose the attempt
            log.exception("provider %s failed", provider.name)
            error = SendError(str(exc) or type(exc).__name__, retryable=True)
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        attempt = await session.get(Attempt, attempt_id, with_for_update=True)
        assert attempt is not None
        attempt.provider = provider.name if provider else None
        attempt.updated_at = now
        if error is None:
            attempt.status, attempt.sent_at = AttemptStatus.SENT, now
            attempt.provider_message_id = provider_id
            await note_delivery(session, runtime.settings, attempt, now)
            return "sent"
        attempt.status = AttemptStatus.FAILED
        attempt.error_code, attempt.error_message = error.code, error.message
        record(
            session,
            now,
            "attempt.failed",
            warning_id=attempt.warning_id,
            call_id=attempt.call_id,
            detail={"attempt": attempt.id, "error": error.message},
        )
        if error.contact_bad:
            await session.execute(
                update(Contact).where(Contact.value == attempt.address).values(bad=True)
            )
        worker = runtime.settings.worker
        if error.retryable and attempt.try_number < worker.retry_max_tries:
            backoff = worker.retry_base_s * 2 ** (attempt.try_number - 1)
            retry = new_attempt(
                call=None,
                warning_id=attempt.warning_id,
                responder_id=attempt.responder_id,
                purpose=attempt.purpose,
                channel=attempt.channel,
                address=attempt.address,
                now=now + timedelta(seconds=backoff * random.uniform(0.8, 1.2)),
                body=attempt.body if attempt.purpose != AttemptPurpose.CALL else None,
                try_number=attempt.try_number + 1,
            )
            retry.call_id = attempt.call_id
            retry.updated_at = now
            session.add(retry)
        return "failed"


async def send_broadcast(runtime: Runtime, broadcast_id: int) -> str:
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        broadcast = await session.get(Broadcast, broadcast_id, with_for_update=True)
        if broadcast is None or broadcast.status != BroadcastStatus.QUEUED:
            return "skipped"
        warning = await session.get(Warning, broadcast.warning_id)
        speaker = await session.scalar(select(Speaker).where(Speaker.id == broadcast.speaker_id))
        assert warning is not None and speaker is not None
        broadcast.status = BroadcastStatus.SENDING
        message = Message(
            channel=Channel.SPEAKER,
            to=speaker.address,
            text=runtime.renderer.render("speaker", warning=warning),
            reference=f"broadcast:{broadcast.id}",
            recipient_key=f"speaker:{speaker.id}",
            expects_answer=False,
            repeat=3,
        )
    provider = runtime.providers.first("speaker")
    error = None
    provider_id = None
    try:
        if provider is None:
            raise SendError("no speaker provider configured")
        provider_id = (await provider.send(message)).provider_message_id
    except SendError as exc:
        error = exc.message
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        broadcast = await session.get(Broadcast, broadcast_id, with_for_update=True)
        assert broadcast is not None
        broadcast.provider = provider.name if provider else None
        if error is None:
            broadcast.status, broadcast.sent_at = BroadcastStatus.SENT, now
            broadcast.provider_message_id = provider_id
            return "sent"
        broadcast.status, broadcast.error_message = BroadcastStatus.FAILED, error
        broadcast.reported_at = now
        from dispatcher.doorknock import open_speaker_task

        await open_speaker_task(runtime, session, broadcast, now)
        return "failed"
