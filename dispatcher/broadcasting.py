"""The send job for one broadcast: a warning played on one speaker (应急广播 / 村村响).

A speaker belongs to the platform named on it (`speakers.csv` provider column), so there
is no failover to another platform: an open circuit or a rate-limit slot defers the
broadcast, a transient error tries the same row again after a backoff, and a permanent
error (or too many tries) fails it, which opens a door-knock task for its village
(鸣锣吹哨). The platform's acceptance only means "sent"; "played" or "failed" comes from
its later report (inbound.py), and silence past `speaker_confirm_timeout_s` fails it too
(escalation.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from channels.base import Channel, Message, SendError
from dispatcher.doorknock import open_speaker_task
from dispatcher.models import Broadcast, Speaker, Warning
from dispatcher.retries import Deferred, backoff_s
from dispatcher.runtime import Runtime
from dispatcher.sending import EARLY
from dispatcher.vocabulary import BroadcastStatus

log = logging.getLogger(__name__)


@dataclass
class _Claim:
    message: Message
    provider_name: str
    try_number: int
    reserved_provider: str | None
    slot_at: datetime | None


async def _claim(runtime: Runtime, broadcast_id: int) -> _Claim | None:
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        broadcast = await session.get(Broadcast, broadcast_id, with_for_update=True)
        if (
            broadcast is None
            or broadcast.status != BroadcastStatus.QUEUED
            or broadcast.due_at > now + EARLY
        ):
            return None
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
            title=warning.headline,
            expects_answer=False,
            repeat=3,
        )
        return _Claim(
            message, speaker.provider, broadcast.try_number, broadcast.provider, broadcast.slot_at
        )


async def _put_back(
    runtime: Runtime, broadcast_id: int, due_at: datetime, provider: str, slot: datetime | None
) -> None:
    async with runtime.db.transaction() as session:
        broadcast = await session.get(Broadcast, broadcast_id, with_for_update=True)
        assert broadcast is not None
        broadcast.status, broadcast.due_at, broadcast.enqueued_at = (
            BroadcastStatus.QUEUED,
            due_at,
            None,
        )
        broadcast.provider, broadcast.slot_at = provider, slot


async def send_broadcast(runtime: Runtime, broadcast_id: int) -> str:
    """Send one broadcast; returns "sent", "failed" or "skipped", or raises `Deferred`."""
    claim = await _claim(runtime, broadcast_id)
    if claim is None:
        return "skipped"
    now = runtime.clock.now()
    name = claim.provider_name
    provider = runtime.providers.get("speaker", name)
    error: SendError | None = None
    provider_id = None
    if provider is None:
        error = SendError(f"speaker provider {name!r} is not configured in [channels.speaker]")
    else:
        admission = await runtime.breakers.admit("speaker", name, now)
        if not admission.allowed and admission.retry_at is not None:
            await _put_back(runtime, broadcast_id, admission.retry_at, name, None)
            raise Deferred(runtime.clock.real_delay((admission.retry_at - now).total_seconds()))
        slot = claim.slot_at if claim.reserved_provider == name else None
        if slot is None:
            rate = runtime.settings.providers.rate_per_s(name, "speaker")
            slot = await runtime.limiter.reserve("speaker", name, rate, now)
        if slot > now + EARLY:
            await _put_back(runtime, broadcast_id, slot, name, slot)
            raise Deferred(runtime.clock.real_delay((slot - now).total_seconds()))
        try:
            provider_id = (await provider.send(claim.message)).provider_message_id
        except SendError as exc:
            error = exc
        except Exception as exc:  # an unexpected failure must not lose the broadcast
            log.exception("speaker provider %s failed", name)
            error = SendError(str(exc) or type(exc).__name__, retryable=True)
        if error is None:
            await runtime.breakers.record_success("speaker", name)
        elif error.retryable:
            await runtime.breakers.record_failure("speaker", name, runtime.clock.now())
    return await _record(runtime, broadcast_id, name, provider_id, error)


async def _record(
    runtime: Runtime,
    broadcast_id: int,
    provider: str,
    provider_id: str | None,
    error: SendError | None,
) -> str:
    now = runtime.clock.now()
    worker = runtime.settings.worker
    retry_at: datetime | None = None
    async with runtime.db.transaction() as session:
        broadcast = await session.get(Broadcast, broadcast_id, with_for_update=True)
        assert broadcast is not None
        broadcast.provider, broadcast.slot_at = provider, None
        if error is None:
            broadcast.status, broadcast.sent_at = BroadcastStatus.SENT, now
            broadcast.provider_message_id = provider_id
            return "sent"
        broadcast.error_code, broadcast.error_message = error.code, error.message
        if error.retryable and broadcast.try_number < worker.retry_max_tries:
            wait = backoff_s(broadcast.try_number, worker.retry_base_s, worker.retry_max_backoff_s)
            retry_at = now + timedelta(seconds=wait)
            broadcast.status, broadcast.due_at = BroadcastStatus.QUEUED, retry_at
            broadcast.try_number += 1
            broadcast.enqueued_at = None
        else:
            broadcast.status, broadcast.reported_at = BroadcastStatus.FAILED, now
            await open_speaker_task(runtime, session, broadcast, now)
    if retry_at is None:
        return "failed"
    # The same row goes again: this job comes back for it after the backoff.
    raise Deferred(runtime.clock.real_delay((retry_at - runtime.clock.now()).total_seconds()))
