"""The escalation ladder and the sweep that drives it.

Each open call holds `next_step_at`. The sweep (an arq cron job, safe in every worker)
takes the due calls in bulk (`FOR UPDATE SKIP LOCKED` on PostgreSQL), applies the next
step of the level's ladder, and schedules the one after. It also re-enqueues attempts
and broadcasts that are due but not in flight, and fails speakers that never confirmed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from dispatcher.audit import record
from dispatcher.doorknock import open_silent_task, open_speaker_task
from dispatcher.fanout import call_attempts, first_addresses, sms_notice
from dispatcher.models import Attempt, Broadcast, Call, Region, Responder, Warning
from dispatcher.runtime import Runtime
from dispatcher.vocabulary import (
    OPEN_CALL_STATES,
    AttemptPurpose,
    AttemptStatus,
    BroadcastStatus,
    CallState,
)

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    steps: int = 0
    requeued: int = 0
    speakers_failed: int = 0


async def sweep(runtime: Runtime) -> SweepReport:
    report = SweepReport()
    report.steps = await _apply_due_steps(runtime)
    report.speakers_failed = await _fail_silent_speakers(runtime)
    report.requeued = await _requeue(runtime)
    if report.steps or report.requeued or report.speakers_failed:
        log.info("sweep: %s", report)
    return report


async def _apply_due_steps(runtime: Runtime) -> int:
    applied = 0
    batch = runtime.settings.worker.sweep_batch
    while True:
        now = runtime.clock.now()
        async with runtime.db.transaction() as session:
            calls = list(
                await session.scalars(
                    select(Call)
                    .join(Warning, Warning.id == Call.warning_id)
                    .where(
                        Call.state.in_(OPEN_CALL_STATES),
                        Call.next_step_at <= now,
                        Warning.state == "active",
                    )
                    .order_by(Call.next_step_at)
                    .limit(batch)
                    .with_for_update(skip_locked=True, of=Call)
                )
            )
            for call in calls:
                await _apply_step(runtime, session, call, now)
            applied += len(calls)
        if len(calls) < batch:
            return applied


async def _apply_step(runtime: Runtime, session, call: Call, now: datetime) -> None:  # type: ignore[no-untyped-def]
    warning = await session.get(Warning, call.warning_id)
    policy = runtime.settings.policy_for(warning.level)
    ladder = policy.ladder
    index = call.escalation_step
    if index >= len(ladder):
        call.state, call.next_step_at = CallState.UNANSWERED, None
        return
    step = ladder[index]
    responder = await session.get(Responder, call.responder_id)
    region = await session.get(Region, call.region_id)
    detail: dict[str, object] = {"step": index + 1, "kind": step.step}
    if step.step == "call_again":
        contacts = (await first_addresses(session, [call.responder_id])).get(call.responder_id, {})
        session.add_all(call_attempts(call, contacts, step.channels, now, try_number=index + 2))
    elif step.step == "call_backup":
        detail["backup"] = await _call_backup(session, call, responder, policy, now)
    elif step.step == "notify_supervisor":
        detail["supervisor"] = responder.supervisor_id
        if responder.supervisor_id is not None:
            minutes = int((now - call.started_at).total_seconds() // 60)
            body = runtime.renderer.render(
                "supervisor_notice",
                responder=responder,
                region=region,
                warning=warning,
                minutes=minutes,
            )
            await sms_notice(
                session,
                to_responder_id=responder.supervisor_id,
                purpose=AttemptPurpose.NOTICE,
                body=body,
                warning_id=call.warning_id,
                call=call,
                now=now,
            )
    elif step.step == "door_knock":
        await open_silent_task(runtime, session, call, warning, now)
        detail["task"] = call.door_knock_task_id
    call.escalation_step = index + 1
    if index + 1 < len(ladder):
        call.state = CallState.ESCALATED
        wait = ladder[index + 1].at_min - step.at_min
        call.next_step_at = now + timedelta(minutes=wait)
    else:
        call.state, call.next_step_at = CallState.UNANSWERED, None
    record(
        session, now, "call.escalated", warning_id=call.warning_id, call_id=call.id, detail=detail
    )


async def _call_backup(
    session, call: Call, responder: Responder, policy, now: datetime
) -> int | None:  # type: ignore[no-untyped-def]
    """Call the backup too; their answer never stands for the silent person's."""
    if call.origin == "backup" or responder.backup_id is None:
        return None
    existing = await session.scalar(
        select(Call).where(
            Call.warning_id == call.warning_id, Call.responder_id == responder.backup_id
        )
    )
    if existing is not None:
        return responder.backup_id
    first = timedelta(minutes=policy.ladder[0].at_min)
    backup_call = Call(
        warning_id=call.warning_id,
        responder_id=responder.backup_id,
        region_id=call.region_id,
        origin="backup",
        backup_for_call_id=call.id,
        state=CallState.PENDING,
        started_at=now,
        next_step_at=now + first,
    )
    session.add(backup_call)
    await session.flush()
    contacts = (await first_addresses(session, [responder.backup_id])).get(responder.backup_id, {})
    session.add_all(call_attempts(backup_call, contacts, policy.channels, now))
    return responder.backup_id


async def _fail_silent_speakers(runtime: Runtime) -> int:
    now = runtime.clock.now()
    limit = now - timedelta(seconds=runtime.settings.worker.speaker_confirm_timeout_s)
    async with runtime.db.transaction() as session:
        stale = list(
            await session.scalars(
                select(Broadcast)
                .where(Broadcast.status == BroadcastStatus.SENT, Broadcast.sent_at <= limit)
                .with_for_update(skip_locked=True)
            )
        )
        for broadcast in stale:
            broadcast.status = BroadcastStatus.FAILED
            broadcast.error_message = "播放未确认"
            broadcast.reported_at = now
            await open_speaker_task(runtime, session, broadcast, now)
        return len(stale)


async def _requeue(runtime: Runtime) -> int:
    """Enqueue what is due but not in flight; arq's job ids make repeats harmless."""
    now = runtime.clock.now()
    worker = runtime.settings.worker
    quiet_since = now - timedelta(seconds=worker.requeue_after_s)
    async with runtime.db.transaction() as session:
        await session.execute(
            update(Attempt)
            .where(
                Attempt.status == AttemptStatus.SENDING,
                Attempt.updated_at <= now - timedelta(seconds=worker.send_lease_s),
            )
            .values(status=AttemptStatus.QUEUED)
        )
        due = or_(Attempt.enqueued_at.is_(None), Attempt.enqueued_at <= quiet_since)
        attempt_ids = list(
            await session.scalars(
                select(Attempt.id)
                .where(Attempt.status == AttemptStatus.QUEUED, Attempt.due_at <= now, due)
                .limit(worker.sweep_batch)
            )
        )
        broadcast_due = or_(Broadcast.enqueued_at.is_(None), Broadcast.enqueued_at <= quiet_since)
        broadcast_ids = list(
            await session.scalars(
                select(Broadcast.id)
                .where(
                    Broadcast.status == BroadcastStatus.QUEUED,
                    Broadcast.due_at <= now,
                    broadcast_due,
                )
                .limit(worker.sweep_batch)
            )
        )
        if attempt_ids:
            await session.execute(
                update(Attempt).where(Attempt.id.in_(attempt_ids)).values(enqueued_at=now)
            )
        if broadcast_ids:
            await session.execute(
                update(Broadcast).where(Broadcast.id.in_(broadcast_ids)).values(enqueued_at=now)
            )
    await runtime.queue.enqueue_attempts(attempt_ids)
    await runtime.queue.enqueue_broadcasts(broadcast_ids)
    return len(attempt_ids) + len(broadcast_ids)
