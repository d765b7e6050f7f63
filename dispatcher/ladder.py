"""One call's escalation ladder: when its clock starts and what each step does.

The clock starts at the call's first send a provider accepted (`note_delivery`), not at
the warning, so a throttled send is not punished. Each step runs `at_min` minutes after
that: `call_again` on the listed channels, `call_backup`, `notify_supervisor` and
`notify_up` (queued as `LadderNotice`s and sent as one digest per person by
`dispatcher.digests`), and `door_knock` (the region's task; its assignee is told once the
sweep's batch is done, so the message lists everyone silent there). A call that could not
be delivered on any channel jumps straight to the door-knock step. Quiet hours defer a
low-level call's steps to the morning. Everything here runs in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.audit import record
from dispatcher.config import LadderStep, Policy, Settings
from dispatcher.doorknock import open_silent_task
from dispatcher.fanout import assign_codes, call_attempts, first_addresses
from dispatcher.models import Attempt, Call, DoorKnockTask, Duty, LadderNotice, Region, Responder
from dispatcher.models import Warning as WarningRow
from dispatcher.quiet_hours import quiet_until
from dispatcher.vocabulary import OPEN_CALL_STATES, AttemptPurpose, CallState

if TYPE_CHECKING:
    from dispatcher.runtime import Runtime


def step_gap(policy: Policy, index: int) -> timedelta:
    """How long after step `index - 1` (or after delivery, for the first) step `index` runs."""
    before = policy.ladder[index - 1].at_min if index > 0 else 0
    return timedelta(minutes=policy.ladder[index].at_min - before)


async def note_delivery(
    session: AsyncSession, settings: Settings, attempt: Attempt, now: datetime
) -> None:
    """A provider accepted (or delivered) one of a call's sends: start the call's clock."""
    if attempt.purpose != AttemptPurpose.CALL or attempt.call_id is None:
        return
    call = await session.get(Call, attempt.call_id, with_for_update=True)
    if call is None or call.delivered_at is not None:
        return
    call.delivered_at = now
    warning = await session.get(WarningRow, call.warning_id)
    assert warning is not None
    policy = settings.policy_for(warning.level)
    waiting = call.state in OPEN_CALL_STATES and call.next_step_at is None
    if waiting and call.escalation_step < len(policy.ladder):
        call.next_step_at = now + step_gap(policy, call.escalation_step)


def undeliverable_target(policy: Policy) -> int | None:
    """The step an undeliverable call jumps to: door-knocking, else the ladder's last step."""
    index = policy.door_knock_index()
    if index is None and policy.ladder:
        index = len(policy.ladder) - 1
    return index


@dataclass
class StepBatch:
    """What a batch of steps leaves to do before its transaction commits."""

    new_tasks: dict[int, DoorKnockTask] = field(default_factory=dict)
    applied: int = 0


async def apply_step(
    runtime: Runtime, session: AsyncSession, call: Call, now: datetime, batch: StepBatch
) -> None:
    warning = await session.get(WarningRow, call.warning_id)
    assert warning is not None
    policy = runtime.settings.policy_for(warning.level)
    index = call.escalation_step
    if index >= len(policy.ladder):
        call.state, call.next_step_at = CallState.UNANSWERED, None
        return
    if (morning := quiet_until(runtime.settings.quiet_hours, warning.level, now)) is not None:
        call.next_step_at = morning
        record(
            session,
            now,
            "call.deferred",
            warning_id=call.warning_id,
            call_id=call.id,
            detail={"until": morning.isoformat()},
        )
        return
    step = policy.ladder[index]
    detail: dict[str, object] = {"step": index + 1, "kind": step.step}
    responder = await session.get(Responder, call.responder_id)
    assert responder is not None
    if step.step == "call_again":
        contacts = (await first_addresses(session, [call.responder_id])).get(call.responder_id, {})
        session.add_all(call_attempts(call, contacts, step.channels, now, try_number=index + 2))
    elif step.step == "call_backup":
        detail["backup"] = await _call_backup(session, call, responder, policy, now)
    elif step.step == "notify_supervisor":
        detail["supervisor"] = responder.supervisor_id
        if responder.supervisor_id is not None:
            await _queue_notice(session, call, "supervisor", responder.supervisor_id, now)
    elif step.step == "notify_up":
        told = await _notify_up(session, call, step, now)
        detail["told"] = told
    elif step.step == "door_knock":
        task, created = await open_silent_task(
            session, call, now, timedelta(minutes=policy.task_accept_within_min)
        )
        if created:
            batch.new_tasks[task.id] = task
        detail["task"] = task.id
    call.escalation_step = index + 1
    if index + 1 < len(policy.ladder):
        call.state = CallState.ESCALATED
        # From when this step was due, not when the sweep got to it: no drift.
        call.next_step_at = (call.next_step_at or now) + step_gap(policy, index + 1)
    else:
        call.state, call.next_step_at = CallState.UNANSWERED, None
    batch.applied += 1
    record(
        session, now, "call.escalated", warning_id=call.warning_id, call_id=call.id, detail=detail
    )


async def _queue_notice(
    session: AsyncSession, call: Call, kind: str, recipient_id: int, now: datetime
) -> bool:
    exists = await session.scalar(
        select(LadderNotice.id).where(
            LadderNotice.call_id == call.id,
            LadderNotice.kind == kind,
            LadderNotice.recipient_id == recipient_id,
        )
    )
    if exists is not None:
        return False
    session.add(LadderNotice(call_id=call.id, kind=kind, recipient_id=recipient_id, created_at=now))
    return True


async def _notify_up(session: AsyncSession, call: Call, step: LadderStep, now: datetime) -> int:
    """Tell the duty office of the region level above, e.g. the county's duty officers."""
    region = await session.get(Region, call.region_id)
    assert region is not None
    codes = [code for code in region.path.strip("/").split("/") if code]
    ancestor = await session.scalar(
        select(Region.id).where(Region.code.in_(codes), Region.level == step.level)
    )
    if ancestor is None:
        return 0
    recipients = list(
        await session.scalars(
            select(Responder.id)
            .join(Duty, Duty.responder_id == Responder.id)
            .where(
                Duty.region_id == ancestor,
                Responder.role.in_(step.notify_roles()),
                Responder.active.is_(True),
                Responder.id != call.responder_id,
            )
            .order_by(Responder.id)
        )
    )
    for recipient_id in recipients:
        await _queue_notice(session, call, "up", recipient_id, now)
    return len(recipients)


async def _call_backup(
    session: AsyncSession, call: Call, responder: Responder, policy: Policy, now: datetime
) -> int | None:
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
    backup_call = Call(
        warning_id=call.warning_id,
        responder_id=responder.backup_id,
        region_id=call.region_id,
        origin="backup",
        backup_for_call_id=call.id,
        state=CallState.PENDING,
        started_at=now,
        next_step_at=None,
    )
    session.add(backup_call)
    await session.flush()
    await assign_codes(session, [backup_call])
    contacts = (await first_addresses(session, [responder.backup_id])).get(responder.backup_id, {})
    session.add_all(call_attempts(backup_call, contacts, policy.channels, now))
    return responder.backup_id
