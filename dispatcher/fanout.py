"""Warning to calls to attempts: who gets called on which channel.

`create_calls` writes one call per targeted responder, a first attempt per channel of the
level's policy for which the responder has a contact, and a broadcast per speaker, all in
the caller's transaction. The caller enqueues the jobs after commit; if that enqueue is
lost, the sweep finds the attempts due and enqueues them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.config import Policy
from dispatcher.models import Attempt, Broadcast, Call, Contact, Warning
from dispatcher.targeting import Target
from dispatcher.vocabulary import AttemptPurpose, AttemptStatus, BroadcastStatus, CallState

CONTACT_KIND = {"sms": "phone", "voice": "phone", "wechat": "wecom"}


@dataclass
class FanoutResult:
    call_ids: list[int] = field(default_factory=list)
    attempt_ids: list[int] = field(default_factory=list)
    broadcast_ids: list[int] = field(default_factory=list)


async def first_addresses(
    session: AsyncSession, responder_ids: list[int]
) -> dict[int, dict[str, str]]:
    """responder id -> {contact kind: first usable address}."""
    result: dict[int, dict[str, str]] = {}
    if not responder_ids:
        return result
    rows = await session.execute(
        select(Contact.responder_id, Contact.kind, Contact.value)
        .where(Contact.responder_id.in_(responder_ids), Contact.bad.is_(False))
        .order_by(Contact.responder_id, Contact.position)
    )
    for responder_id, kind, value in rows:
        result.setdefault(responder_id, {}).setdefault(kind, value)
    return result


def new_attempt(
    *,
    call: Call | None,
    warning_id: int | None,
    responder_id: int | None,
    purpose: str,
    channel: str,
    address: str,
    now: datetime,
    body: str | None = None,
    try_number: int = 1,
) -> Attempt:
    return Attempt(
        warning_id=warning_id,
        call_id=call.id if call else None,
        responder_id=responder_id,
        purpose=purpose,
        channel=channel,
        address=address,
        body=body,
        status=AttemptStatus.QUEUED,
        try_number=try_number,
        due_at=now,
        updated_at=now,
    )


def call_attempts(
    call: Call, contacts: dict[str, str], channels: list[str], now: datetime, try_number: int = 1
) -> list[Attempt]:
    """An attempt per channel for which the responder has a usable contact."""
    attempts = []
    for channel in channels:
        address = contacts.get(CONTACT_KIND[channel])
        if address:
            attempts.append(
                new_attempt(
                    call=call,
                    warning_id=call.warning_id,
                    responder_id=call.responder_id,
                    purpose=AttemptPurpose.CALL,
                    channel=channel,
                    address=address,
                    now=now,
                    try_number=try_number,
                )
            )
    return attempts


async def sms_notice(
    session: AsyncSession,
    *,
    to_responder_id: int,
    purpose: str,
    body: str,
    warning_id: int | None,
    call: Call | None,
    now: datetime,
) -> Attempt | None:
    """Queue a text to a responder's first phone (supervisor notice, task hand-over)."""
    contacts = (await first_addresses(session, [to_responder_id])).get(to_responder_id, {})
    phone = contacts.get("phone")
    if phone is None:
        return None
    attempt = new_attempt(
        call=call,
        warning_id=warning_id,
        responder_id=to_responder_id,
        purpose=purpose,
        channel="sms",
        address=phone,
        now=now,
        body=body,
    )
    session.add(attempt)
    return attempt


async def create_calls(
    session: AsyncSession, *, warning: Warning, target: Target, policy: Policy, now: datetime
) -> FanoutResult:
    result = FanoutResult()
    first_step = timedelta(minutes=policy.ladder[0].at_min) if policy.ladder else None
    calls = [
        Call(
            warning_id=warning.id,
            responder_id=responder_id,
            region_id=region_id,
            state=CallState.PENDING,
            started_at=now,
            next_step_at=now + first_step if first_step else None,
        )
        for responder_id, region_id in sorted(target.responders.items())
    ]
    session.add_all(calls)
    await session.flush()
    addresses = await first_addresses(session, [c.responder_id for c in calls])
    attempts = []
    for call in calls:
        contacts = addresses.get(call.responder_id, {})
        attempts += call_attempts(call, contacts, policy.channels, now)
    broadcasts = [
        Broadcast(warning_id=warning.id, speaker_id=sid, status=BroadcastStatus.QUEUED, due_at=now)
        for sid in target.speakers
    ]
    session.add_all(attempts)
    session.add_all(broadcasts)
    await session.flush()
    result.call_ids = [c.id for c in calls]
    result.attempt_ids = [a.id for a in attempts]
    result.broadcast_ids = [b.id for b in broadcasts]
    return result
