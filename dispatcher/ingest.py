"""Taking a warning in: verify, limit, parse, check, store once, act, enqueue after commit.

Order of refusals: 401 signature, 429 the sender's rate, 4xx the body (`dispatcher.cap`),
403 a CAP sender, level or area the key may not use (`dispatcher.senders`), 422 already
expired. A refusal stores nothing. An accepted message is stored with its exact bytes.

Same (sender, identifier) twice returns the stored warning and calls nobody again. Only
status Actual and Exercise (a drill) call people, and only msgType Alert and Update; an
Update supersedes and a Cancel lifts the warnings they reference (`dispatcher.lifecycle`).
Whatever is only stored (Test/System/Draft status, Ack/Error, references to unknown
warnings) says so in the warning's notes, which the webhook returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.audit import record
from dispatcher.cap import ParsedWarning, WarningRejected, parse_warning
from dispatcher.config import SenderSettings
from dispatcher.fanout import FanoutResult, create_calls
from dispatcher.fanout_stages import LEASE, split_first_stage, warning_target, write_stages
from dispatcher.lifecycle import cancel_warnings, find_referenced, stop_warning, supersede
from dispatcher.models import Broadcast, Call, Warning
from dispatcher.runtime import Runtime
from dispatcher.security import verify_webhook
from dispatcher.senders import check_level, check_rate, field_of
from dispatcher.statistics import BIG_FANOUT
from dispatcher.targeting import Target
from dispatcher.vocabulary import CallState, WarningState

log = logging.getLogger(__name__)
CALLING_STATUSES = frozenset({"Actual", "Exercise"})
CALLING_MSG_TYPES = frozenset({"Alert", "Update"})


@dataclass
class IngestResult:
    id: int
    calls: int
    broadcasts: int
    duplicate: bool
    level: str
    notes: list[str] = field(default_factory=list)
    drill: bool = False


async def ingest(
    runtime: Runtime,
    *,
    body: bytes,
    content_type: str | None,
    timestamp: str | None,
    signature: str | None,
) -> IngestResult:
    """Raises SignatureRejected (401) or WarningRejected (4xx) before anything is stored."""
    now = runtime.clock.now()
    sender = verify_webhook(
        senders=runtime.settings.effective_senders,
        timestamp=timestamp,
        signature=signature,
        body=body,
        now=now,
    )
    await check_rate(runtime, sender.settings)
    parsed = parse_warning(body, content_type)
    if sender.cap_senders and parsed.sender not in sender.cap_senders:
        raise WarningRejected(
            f"key {sender.name!r} may not post for sender {parsed.sender!r}",
            403,
            field_of(parsed, "sender"),
        )
    check_level(sender.settings, parsed)
    if parsed.expires is not None and parsed.expires < now and parsed.msg_type != "Cancel":
        raise WarningRejected(
            f"warning expired at {parsed.expires.isoformat()} "
            f"(server time {now.isoformat(timespec='seconds')})",
            422,
            field_of(parsed, "expires"),
        )

    existing = await _find(runtime, parsed)
    if existing is not None:
        return existing
    try:
        result, fanned, pending = await _store(runtime, parsed, sender.settings, body, content_type)
    except IntegrityError:
        found = await _find(runtime, parsed)
        if found is None:
            raise
        return found
    try:
        await runtime.queue.enqueue_attempts(fanned.attempt_ids)
        await runtime.queue.enqueue_broadcasts(fanned.broadcast_ids)
    except Exception:  # the sweep re-enqueues from the database; the warning is safe
        log.exception("enqueue failed for warning %s; the sweep will retry", result.id)
    if pending:
        await _write_the_rest(runtime, result, pending)
    if result.calls >= BIG_FANOUT:
        try:
            await runtime.queue.enqueue_statistics()
        except Exception:
            log.exception("could not ask for statistics after warning %s", result.id)
    return result


async def _write_the_rest(
    runtime: Runtime, result: IngestResult, pending: list[tuple[int, int]]
) -> None:
    """The calls after the first stage, each stage sent as soon as it commits. The
    warning is stored whatever happens here: a failure leaves the rest to the sweep."""
    try:
        written = await write_stages(runtime, result.id, pending)
    except Exception:
        log.exception("fan-out of warning %s interrupted; the sweep will finish it", result.id)
        result.notes.append(
            f"fan-out interrupted after {result.calls} calls: a worker writes the rest"
        )
        return
    result.calls += written.calls
    result.notes += written.notes


async def _find(runtime: Runtime, parsed: ParsedWarning) -> IngestResult | None:
    async with runtime.db.sessions() as session:
        warning = await session.scalar(
            select(Warning).where(
                Warning.sender == parsed.sender, Warning.identifier == parsed.identifier
            )
        )
        if warning is None:
            return None
        calls = await session.scalar(
            select(func.count()).select_from(Call).where(Call.warning_id == warning.id)
        )
        broadcasts = await session.scalar(
            select(func.count()).select_from(Broadcast).where(Broadcast.warning_id == warning.id)
        )
        return IngestResult(
            warning.id,
            calls or 0,
            broadcasts or 0,
            True,
            warning.level,
            list(warning.notes),
            warning.is_drill,
        )


def _new_warning(
    parsed: ParsedWarning, api_sender: str, body: bytes, content_type: str | None, runtime: Runtime
) -> Warning:
    return Warning(
        sender=parsed.sender,
        identifier=parsed.identifier,
        api_sender=api_sender,
        sent=parsed.sent,
        status=parsed.status,
        msg_type=parsed.msg_type,
        references=parsed.references,
        event=parsed.event,
        level=parsed.level,
        severity=parsed.severity,
        urgency=parsed.urgency,
        certainty=parsed.certainty,
        headline=parsed.headline,
        description=parsed.description,
        instruction=parsed.instruction,
        sender_name=parsed.sender_name,
        onset=parsed.onset,
        expires=parsed.expires,
        areas=[
            {
                "description": a.description,
                "geocodes": [list(g) for g in a.geocodes],
                "polygons": list(a.polygons),
                "circles": list(a.circles),
            }
            for a in parsed.areas
        ],
        source_format=parsed.source_format,
        raw_payload=body.decode("utf-8", "replace"),
        raw_body=body,
        content_type=(content_type or "")[:100] or None,
        is_drill=parsed.is_drill,
        signal=parsed.signal,
        state=WarningState.ACTIVE,
        notes=[],
        received_at=runtime.clock.now(),
    )


async def _store(
    runtime: Runtime,
    parsed: ParsedWarning,
    sender: SenderSettings,
    body: bytes,
    content_type: str | None,
) -> tuple[IngestResult, FanoutResult, list[tuple[int, int]]]:
    """The warning, and whatever it does at once; the calls beyond the first stage of a
    big Alert are returned to be written after this transaction commits."""
    now = runtime.clock.now()
    notes: list[str] = []
    fanned = FanoutResult()
    pending: list[tuple[int, int]] = []
    notice_ids: list[int] = []
    async with runtime.db.transaction() as session:
        target = (
            await warning_target(runtime, session, parsed, sender) if parsed.areas else Target()
        )
        warning = _new_warning(parsed, sender.name, body, content_type, runtime)
        session.add(warning)
        await session.flush()
        acts = parsed.status in CALLING_STATUSES
        if parsed.msg_type == "Cancel":
            warning.state = WarningState.CANCELLED
            if acts:
                referenced = await find_referenced(session, parsed)
                notes += referenced.notes
                cancel_notes, notice_ids = await cancel_warnings(
                    runtime, session, warning, referenced.warnings, now
                )
                notes += cancel_notes
            else:
                notes.append(f"status {parsed.status}: stored, nothing cancelled")
        elif not acts:
            notes.append(f"status {parsed.status}: stored, nobody called")
        elif parsed.msg_type not in CALLING_MSG_TYPES:
            notes.append(f"msgType {parsed.msg_type}: stored, nobody called")
        else:
            fanned, fan_notes, pending = await _fan_out(runtime, session, parsed, warning, target)
            notes += fan_notes
        fanned.attempt_ids += notice_ids
        warning.notes = notes
        if pending:
            warning.fanout_lease_until = now + LEASE
        else:
            warning.fanned_out_at = now
        calls = len(fanned.call_ids) + len(pending)
        record(
            session,
            now,
            "warning.received",
            warning_id=warning.id,
            actor=sender.name,
            detail={"identifier": parsed.identifier, "calls": calls, "notes": notes},
        )
        result = IngestResult(
            warning.id,
            len(fanned.call_ids),
            len(fanned.broadcast_ids),
            False,
            warning.level,
            notes,
            warning.is_drill,
        )
    return result, fanned, pending


async def _fan_out(
    runtime: Runtime,
    session: AsyncSession,
    parsed: ParsedWarning,
    warning: Warning,
    target: Target,
) -> tuple[FanoutResult, list[str], list[tuple[int, int]]]:
    """Calls for an Alert, or for an Update of a known active warning its supersession;
    and an Alert's (responder id, region id) beyond the first stage, still to call."""
    notes: list[str] = []
    if target.unknown_codes:
        notes.append("unknown region codes: " + ", ".join(target.unknown_codes))
    if not target.responders and not target.speakers:
        notes.append("no responders or speakers in the targeted regions")
    policy = runtime.settings.policy_for(parsed.level)
    clock_now = runtime.clock.now()
    if parsed.msg_type == "Update":
        referenced = await find_referenced(session, parsed)
        notes += referenced.notes
        active = [w for w in referenced.warnings if w.state == WarningState.ACTIVE]
        for stale in referenced.warnings:
            if stale.state != WarningState.ACTIVE:
                notes.append(f"referenced warning {stale.id} is {stale.state}: not superseded")
        if active:
            previous = active[-1]
            fanned, supersede_notes = await supersede(
                runtime,
                session,
                new=warning,
                previous=previous,
                target=target,
                policy=policy,
                now=clock_now,
            )
            for other in active[:-1]:  # several live warnings merged into one update
                await stop_warning(
                    session,
                    other,
                    state=WarningState.SUPERSEDED,
                    call_state=CallState.SUPERSEDED,
                    now=clock_now,
                )
                supersede_notes.append(f"supersedes warning {other.id} too")
            return fanned, notes + supersede_notes, []
        notes.append("update called as a new warning")
    first, pending = split_first_stage(list(target.responders.items()))
    fanned = await create_calls(
        session,
        warning=warning,
        responders=first,
        speakers=target.speakers,
        policy=policy,
        now=clock_now,
        quiet=runtime.settings.quiet_hours,
    )
    return fanned, notes, pending
