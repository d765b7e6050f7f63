"""Warning to calls to attempts: who gets called on which channel.

`create_calls` writes one call per responder it is given (with its short answer code), a
first attempt per channel of the level's policy for which the responder has a contact,
and a broadcast per speaker, all in the caller's transaction; a big warning's
responders come in stages (`dispatcher.fanout_stages`). The ladder's clock starts
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
from typing import Any

from sqlalchemy import insert, literal, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from dispatcher.bulk import id_in, insert_rows, reserve_ids
from dispatcher.codes import pick_code
from dispatcher.config import Policy, QuietHoursSettings
from dispatcher.db import UTCDateTime
from dispatcher.models import Attempt, Broadcast, Call, Contact, Warning
from dispatcher.quiet_hours import defer
from dispatcher.vocabulary import AttemptPurpose, AttemptStatus, BroadcastStatus, CallState

CONTACT_KIND = {"sms": "phone", "voice": "phone", "wechat": "wecom"}
NOTHING_TAKEN: frozenset[str] = frozenset()


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
        .where(id_in(session, Contact.responder_id, responder_ids), Contact.bad.is_(False))
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
        **attempt_row(
            call_id=call.id if call else None,
            warning_id=warning_id,
            responder_id=responder_id,
            purpose=purpose,
            channel=channel,
            address=address,
            now=now,
            body=body,
            try_number=try_number,
        )
    )


def attempt_row(
    *,
    call_id: int | None,
    warning_id: int | None,
    responder_id: int | None,
    purpose: str,
    channel: str,
    address: str,
    now: datetime,
    body: str | None = None,
    try_number: int = 1,
) -> dict[str, Any]:
    """A queued attempt as a row, for a caller inserting many at once."""
    return {
        "warning_id": warning_id,
        "call_id": call_id,
        "responder_id": responder_id,
        "purpose": purpose,
        "channel": channel,
        "address": address,
        "body": body,
        "status": AttemptStatus.QUEUED,
        "try_number": try_number,
        "due_at": now,
        "updated_at": now,
    }


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
    # a person has one call per warning: these calls' own codes are not taken
    taken = await _codes_held(session, responder_ids, {call.warning_id for call in calls})
    for call in calls:
        kept = call.code if call.code and call.code not in taken[call.responder_id] else None
        code = kept or pick_code(call.id, taken[call.responder_id])
        call.code = code
        taken[call.responder_id].add(code)


async def _codes_held(
    session: AsyncSession, responder_ids: list[int], other_than: set[int]
) -> dict[int, set[str]]:
    """responder id -> codes of their calls of live warnings other than `other_than`.

    The live warnings are found first and their calls looked up by (warning, responder):
    asked as a join, the calls were scanned whole for each stage of a big fan-out (no
    index leads with the responder), the warning's own calls written so far included."""
    taken: dict[int, set[str]] = defaultdict(set)
    others = list(
        await session.scalars(
            select(Warning.id).where(Warning.state == "active", Warning.id.not_in(other_than))
        )
    )
    if not others:
        return taken
    rows = await session.execute(
        select(Call.responder_id, Call.code).where(
            Call.warning_id.in_(others),
            id_in(session, Call.responder_id, responder_ids),
            Call.code.is_not(None),
        )
    )
    for responder_id, code in rows:
        taken[responder_id].add(code or "")
    return taken


CALL_COLUMNS = (
    "id",
    "warning_id",
    "responder_id",
    "region_id",
    "state",
    "origin",
    "escalation_step",
    "started_at",
    "code",
)
ATTEMPT_COLUMNS = (
    "warning_id",
    "call_id",
    "responder_id",
    "purpose",
    "channel",
    "address",
    "status",
    "try_number",
    "due_at",
    "enqueued_at",
    "updated_at",
)


def sends_due(warning: Warning, now: datetime, quiet: QuietHoursSettings | None) -> datetime:
    """When a warning's first sends are due: now, or for a low-level warning at night the
    morning, when configured (never red/orange)."""
    return defer(quiet, warning.level, now) if quiet is not None else now


async def create_calls(
    session: AsyncSession,
    *,
    warning: Warning,
    responders: Sequence[tuple[int, int]],
    speakers: Sequence[int],
    policy: Policy,
    now: datetime,
    quiet: QuietHoursSettings | None = None,
    with_sends: bool = True,
) -> FanoutResult:
    """Calls to `responders` ((responder id, region id), none of them called yet on this
    warning) with their first attempts (unless not `with_sends`: a big warning's later
    stages leave them to `first_attempts` in a worker), and a broadcast per speaker.

    A red warning may cover 100,000 people: call ids are reserved first, so each call's
    code is picked before its row is written; the calls go in as one bulk write
    (`dispatcher.bulk`) and their first attempts as one INSERT ... SELECT, never an ORM
    object or a round trip per row."""
    result = FanoutResult()
    send_at = sends_due(warning, now, quiet)
    targeted = sorted(responders)
    responder_ids = [responder_id for responder_id, _ in targeted]
    taken = await _codes_held(session, responder_ids, {warning.id})
    call_ids = await reserve_ids(session, Call.__table__, len(targeted))  # type: ignore[arg-type]
    calls = [
        (
            call_id,
            warning.id,
            responder_id,
            region_id,
            CallState.PENDING,
            "duty",
            0,
            now,
            pick_code(call_id, taken.get(responder_id, NOTHING_TAKEN)),
        )
        for call_id, (responder_id, region_id) in zip(call_ids, targeted, strict=True)
    ]
    await insert_rows(session, Call.__table__, CALL_COLUMNS, calls)  # type: ignore[arg-type]
    if call_ids and with_sends:
        result.attempt_ids = await first_attempts(
            session, warning.id, (call_ids[0], call_ids[-1]), policy.channels, send_at, now
        )
    result.call_ids = call_ids
    broadcasts = [
        Broadcast(
            warning_id=warning.id, speaker_id=sid, status=BroadcastStatus.QUEUED, due_at=send_at
        )
        for sid in speakers
    ]
    session.add_all(broadcasts)
    await session.flush()
    result.broadcast_ids = [b.id for b in broadcasts]
    return result


async def first_attempts(
    session: AsyncSession,
    warning_id: int,
    call_range: tuple[int, int],
    channels: list[str],
    at: datetime,
    now: datetime,
    *,
    unsent_only: bool = False,
) -> list[int]:
    """The first attempt of each of the warning's calls with ids in `call_range` (the
    calls just written) on each channel for which the responder has a usable contact
    (its first by position), written by the database from the calls and contacts in one
    statement: 300,000 addresses never travel to Python and back. Ids ascend by channel
    in the policy's order, then by call, so that a send job's batch of consecutive ids
    is mostly one channel: one provider request and one record transaction for it.
    With `unsent_only`, calls that already have a send are left out (a range another
    writer's calls interleave with). The sends are due `at`, and count as enqueued
    `now`: the caller enqueues them once they commit, and the sweep leaves them alone
    until `requeue_after_s` has passed (it requeued every one of a fan-out still queued,
    300,000 at N = 100,000, as new jobs on each sweep)."""
    if not channels:
        return []
    kinds = [
        select(
            literal(channel).label("channel"),
            literal(CONTACT_KIND[channel]).label("kind"),
            literal(order).label("ord"),
        )
        for order, channel in enumerate(channels)
    ]
    wanted = union_all(*kinds).subquery("wanted") if len(kinds) > 1 else kinds[0].subquery("wanted")
    # Each call's contacts by index, and of those only the first usable one of its kind:
    # written as lookups, not a ranking joined back, so that even a planner without
    # statistics (a freshly loaded directory) never repeats the ranking per call.
    earlier = aliased(Contact)
    has_earlier = (
        select(earlier.id)
        .where(
            earlier.responder_id == Contact.responder_id,
            earlier.kind == Contact.kind,
            earlier.bad.is_(False),
            (earlier.position < Contact.position)
            | ((earlier.position == Contact.position) & (earlier.id < Contact.id)),
        )
        .exists()
    )
    conditions = [
        Call.warning_id == warning_id,
        Call.id.between(*call_range),
        Contact.bad.is_(False),
        ~has_earlier,
    ]
    if unsent_only:
        sent = aliased(Attempt)
        conditions.append(
            ~select(sent.id)
            .where(sent.call_id == Call.id, sent.purpose == AttemptPurpose.CALL)
            .exists()
        )
    rows = (
        select(
            literal(warning_id),
            Call.id,
            Call.responder_id,
            literal(str(AttemptPurpose.CALL)),
            wanted.c.channel,
            Contact.value,
            literal(str(AttemptStatus.QUEUED)),
            literal(1),
            literal(at, UTCDateTime()),
            literal(now, UTCDateTime()),
            literal(at, UTCDateTime()),
        )
        .select_from(Call)
        .join(Contact, Contact.responder_id == Call.responder_id)
        .join(wanted, wanted.c.kind == Contact.kind)
        .where(*conditions)
        .order_by(wanted.c.ord, Call.id)
    )
    ids = await session.scalars(
        insert(Attempt).from_select(ATTEMPT_COLUMNS, rows).returning(Attempt.id)
    )
    return sorted(ids)
