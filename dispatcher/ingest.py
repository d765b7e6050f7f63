"""Taking a warning in: verify, parse, store once, fan out, enqueue after commit.

Same (sender, identifier) twice returns the stored warning and calls nobody again. A
warning that is only stored (Test/System/Draft status, an Update or Cancel of an
unknown warning) says so in its notes, which the webhook returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from dispatcher.audit import record
from dispatcher.cap import ParsedWarning, WarningRejected, parse_warning
from dispatcher.fanout import create_calls
from dispatcher.models import Attempt, Broadcast, Call, Warning
from dispatcher.runtime import Runtime
from dispatcher.security import verify_webhook
from dispatcher.targeting import resolve_target
from dispatcher.vocabulary import (
    OPEN_CALL_STATES,
    AttemptStatus,
    BroadcastStatus,
    CallState,
)

log = logging.getLogger(__name__)
CALLING_STATUSES = {"Actual"}


@dataclass
class IngestResult:
    id: int
    calls: int
    broadcasts: int
    duplicate: bool
    level: str
    notes: list[str] = field(default_factory=list)


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
    parsed = parse_warning(body, content_type)
    if sender.cap_senders and parsed.sender not in sender.cap_senders:
        raise WarningRejected(f"key {sender.name!r} may not post for sender {parsed.sender!r}", 403)
    if parsed.expires is not None and parsed.expires <= now and parsed.msg_type != "Cancel":
        raise WarningRejected(f"warning expired at {parsed.expires.isoformat()}", 422)

    existing = await _find(runtime, parsed)
    if existing is not None:
        return existing
    try:
        result, attempt_ids, broadcast_ids = await _store(runtime, parsed, sender.name, body)
    except IntegrityError:
        found = await _find(runtime, parsed)
        if found is None:
            raise
        return found
    try:
        await runtime.queue.enqueue_attempts(attempt_ids)
        await runtime.queue.enqueue_broadcasts(broadcast_ids)
    except Exception:  # the sweep re-enqueues from the database; the warning is safe
        log.exception("enqueue failed for warning %s; the sweep will retry", result.id)
    return result


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
            warning.id, calls or 0, broadcasts or 0, True, warning.level, list(warning.notes)
        )


async def _store(
    runtime: Runtime, parsed: ParsedWarning, api_sender: str, body: bytes
) -> tuple[IngestResult, list[int], list[int]]:
    now = runtime.clock.now()
    notes: list[str] = []
    async with runtime.db.transaction() as session:
        warning = Warning(
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
            state="active",
            notes=[],
            received_at=now,
        )
        session.add(warning)
        await session.flush()
        attempt_ids: list[int] = []
        broadcast_ids: list[int] = []
        calls = 0
        if parsed.msg_type == "Cancel":
            notes += await _cancel_referenced(session, parsed, now)
            warning.state = "cancelled"
        elif parsed.status not in CALLING_STATUSES:
            notes.append(f"status {parsed.status}: stored, nobody called")
        else:
            if parsed.msg_type == "Update":
                notes.append("update stored and called as a new warning")
            policy = runtime.settings.policy_for(parsed.level)
            target = await resolve_target(session, parsed.geocode_values(), policy.roles)
            if target.unknown_codes:
                notes.append("unknown region codes: " + ", ".join(target.unknown_codes))
            if not target.responders and not target.speakers:
                notes.append("no responders or speakers in the targeted regions")
            fanned = await create_calls(
                session,
                warning=warning,
                target=target,
                policy=policy,
                now=now,
                quiet=runtime.settings.quiet_hours,
            )
            attempt_ids, broadcast_ids = fanned.attempt_ids, fanned.broadcast_ids
            calls = len(fanned.call_ids)
        warning.notes = notes
        record(
            session,
            now,
            "warning.received",
            warning_id=warning.id,
            actor=api_sender,
            detail={"identifier": parsed.identifier, "calls": calls, "notes": notes},
        )
        result = IngestResult(warning.id, calls, len(broadcast_ids), False, warning.level, notes)
    return result, attempt_ids, broadcast_ids


async def _cancel_referenced(session, parsed: ParsedWarning, now) -> list[str]:  # type: ignore[no-untyped-def]
    notes = []
    for triple in (parsed.references or "").split():
        parts = triple.split(",")
        if len(parts) < 2:
            notes.append(f"unreadable reference {triple!r}")
            continue
        target = await session.scalar(
            select(Warning).where(Warning.sender == parts[0], Warning.identifier == parts[1])
        )
        if target is None:
            notes.append(f"reference to unknown warning {parts[1]}")
            continue
        target.state = "cancelled"
        await session.execute(
            update(Call)
            .where(Call.warning_id == target.id, Call.state.in_(OPEN_CALL_STATES))
            .values(state=CallState.CANCELLED, next_step_at=None)
        )
        await session.execute(
            update(Attempt)
            .where(Attempt.warning_id == target.id, Attempt.status == AttemptStatus.QUEUED)
            .values(status=AttemptStatus.CANCELLED, updated_at=now)
        )
        await session.execute(
            update(Broadcast)
            .where(Broadcast.warning_id == target.id, Broadcast.status == BroadcastStatus.QUEUED)
            .values(status=BroadcastStatus.CANCELLED)
        )
        record(session, now, "warning.cancelled", warning_id=target.id)
        notes.append(f"cancelled warning {target.id}")
    return notes
