"""Warning to calls to attempts: who gets called on which channel.

`create_calls` writes one call per targeted responder (with its short answer code), a
first attempt per channel of the level's policy for which the responder has a contact,
and a broadcast per speaker, all in the caller's transaction. The ladder's clock starts
when a provider first accepts one of the call's sends (`dispatcher.ladder`), so calls
start with no `next_step_at`; a low-level warning in quiet hours is sent when they end.
The caller enqueues the jobs after commit; if that enqueue is lost, the sweep finds the
attempts due and enqueues them again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.codes import pick_code
from dispatcher.config import Policy, QuietHoursSettings
from dispatcher.models import Attempt, Broadcast, Call, Contact, Warning
from dispatcher.quiet_hours import defer
from dispatcher.targeting import Target
from dispatcher.vocabulary import AttemptPurpose, AttemptStatus, BroadcastStatus, CallState

CONTACT_KIND = {"sms": "phone", "voice": "phone", "wechat": "wecom"}
FANOUT_BATCH = 5000


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


async def mark_contact_bad(session: AsyncSession, address: str) -> None:
    """A provider said this number will never work: leave it out of later sends."""
    await session.execute(update(Contact).where(Contact.value == address).values(bad=True))


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


async def notices(
    session: AsyncSession,
    *,
    to_responder_id: int,
    purpose: str,
    body: str,
    warning_id: int | None,
    now: datetime,
) -> list[Attempt]:
    """Queue a text to a responder's first phone and WeCom account (a task hand-over)."""
    contacts = (await first_addresses(session, [to_responder_id])).get(to_responder_id, {})
    attempts = [
        new_attempt(
            call=None,
            warning_id=warning_id,
            responder_id=to_responder_id,
            purpose=purpose,
            channel=channel,
            address=contacts[CONTACT_KIND[channel]],
            now=now,
            body=body,
        )
        for channel in ("sms", "wechat")
        if CONTACT_KIND[channel] in contacts
    ]
    session.add_all(attempts)
    return attempts


async def assign_codes(session: AsyncSession, calls: Sequence[Call]) -> None:
    """Give each call a short code unique among its responder's calls of live warnings,
    keeping a code already set on the call (an update's) when it is still free."""
    responder_ids = sorted({call.responder_id for call in calls})
    taken: dict[int, set[str]] = defaultdict(set)
    for start in range(0, len(responder_ids), 500):
        rows = await session.execute(
            select(Call.responder_id, Call.code)
            .join(Warning, Warning.id == Call.warning_id)
            .where(
                Call.responder_id.in_(responder_ids[start : start + 500]),
                Warning.state == "active",
                # a person has one call per warning: these calls' own codes are not taken
                Call.warning_id.not_in({call.warning_id for call in calls}),
                Call.code.is_not(None),
            )
        )
        for responder_id, code in rows:
            taken[responder_id].add(code or "")
    for call in calls:
        kept = call.code if call.code and call.code not in taken[call.responder_id] else None
        code = kept or pick_code(call.id, taken[call.responder_id])
        call.code = code
        taken[call.responder_id].add(code)


async def _taken_codes(
    session: AsyncSession, warning_id: int, responder_ids: list[int]
) -> dict[int, set[str]]:
    """responder id -> codes of their calls of other live warnings."""
    taken: dict[int, set[str]] = defaultdict(set)
    for start in range(0, len(responder_ids), 500):
        rows = await session.execute(
            select(Call.responder_id, Call.code)
            .join(Warning, Warning.id == Call.warning_id)
            .where(
                Call.responder_id.in_(responder_ids[start : start + 500]),
                Warning.state == "active",
                Call.warning_id != warning_id,
                Call.code.is_not(None),
            )
        )
        for responder_id, code in rows:
            taken[responder_id].add(code or "")
    return taken


async def create_calls(
    session: AsyncSession,
    *,
    warning: Warning,
    target: Target,
    policy: Policy,
    now: datetime,
    quiet: QuietHoursSettings | None = None,
) -> FanoutResult:
    """Bulk Core inserts, a batch at a time: a red warning may cover 100,000 people, and
    an ORM object per row would make the webhook slower than the providers."""
    result = FanoutResult()
    # A low-level warning at night waits for the morning when configured (never red/orange).
    send_at = defer(quiet, warning.level, now) if quiet is not None else now
    targeted = sorted(target.responders.items())
    for start in range(0, len(targeted), FANOUT_BATCH):
        batch = targeted[start : start + FANOUT_BATCH]
        responder_ids = [responder_id for responder_id, _ in batch]
        taken = await _taken_codes(session, warning.id, responder_ids)
        inserted = await session.execute(
            insert(Call).returning(Call.id, Call.responder_id, sort_by_parameter_order=True),
            [
                {
                    "warning_id": warning.id,
                    "responder_id": responder_id,
                    "region_id": region_id,
                    "state": CallState.PENDING,
                    "origin": "duty",
                    "escalation_step": 0,
                    "started_at": now,
                    "next_step_at": None,
                }
                for responder_id, region_id in batch
            ],
        )
        calls = [(call_id, responder_id) for call_id, responder_id in inserted]
        await session.execute(
            update(Call),
            [
                {"id": call_id, "code": pick_code(call_id, taken[responder_id])}
                for call_id, responder_id in calls
            ],
        )
        addresses = await first_addresses(session, responder_ids)
        rows = [
            _attempt_row(warning.id, call_id, responder_id, channel, address, send_at)
            for call_id, responder_id in calls
            for channel in policy.channels
            if (address := addresses.get(responder_id, {}).get(CONTACT_KIND[channel]))
        ]
        if rows:
            attempt_ids = await session.scalars(
                insert(Attempt).returning(Attempt.id, sort_by_parameter_order=True), rows
            )
            result.attempt_ids += list(attempt_ids)
        result.call_ids += [call_id for call_id, _ in calls]
    broadcasts = [
        Broadcast(
            warning_id=warning.id, speaker_id=sid, status=BroadcastStatus.QUEUED, due_at=send_at
        )
        for sid in target.speakers
    ]
    session.add_all(broadcasts)
    await session.flush()
    result.broadcast_ids = [b.id for b in broadcasts]
    return result


def _attempt_row(
    warning_id: int, call_id: int, responder_id: int, channel: str, address: str, at: datetime
) -> dict[str, object]:
    """The first attempt of a call on one channel, as `new_attempt` would make it."""
    return {
        "warning_id": warning_id,
        "call_id": call_id,
        "responder_id": responder_id,
        "purpose": AttemptPurpose.CALL,
        "channel": channel,
        "address": address,
        "body": None,
        "status": AttemptStatus.QUEUED,
        "try_number": 1,
        "due_at": at,
        "updated_at": at,
    }
