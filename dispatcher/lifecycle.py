"""What happens to a warning after it was first called: Update, Cancel and expiry.

* An Update supersedes the warning it references (the current one of the chain: an Update
  of an Update is followed forward). Everyone the old warning called hears the new text.
  When the level did not rise, a person who had answered keeps the answer: the new call is
  answered from the start and they get an update notice that needs no reply. When it
  rose, everyone answers again under the new level's policy. Whoever had not answered is
  called afresh with the update text and the new level's ladder. The old warning's open
  calls become `superseded`; its queued sends and broadcasts stop.
* A Cancel stops every pending attempt, broadcast and escalation step of the warnings it
  references (and of the Updates that superseded them), closes their open door-knock
  tasks as cancelled, and tells everyone already called, and each task's assignee, that
  the warning is lifted (解除).
* A warning whose `expires` passes while it is active is marked expired by the sweep: its
  open calls become `expired` and its pending sends, broadcasts and ladder stop.

References act only on warnings of the same CAP sender and the same status (a drill's
Cancel never lifts a real warning); any other reference is stored and reported in notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.audit import record
from dispatcher.config import Policy
from dispatcher.fanout import (
    FanoutResult,
    assign_codes,
    call_attempts,
    first_addresses,
    sms_notice,
)
from dispatcher.models import Attempt, Broadcast, Call, DoorKnockTask, Warning
from dispatcher.quiet_hours import defer
from dispatcher.runtime import Runtime
from dispatcher.targeting import Target
from dispatcher.vocabulary import (
    OPEN_CALL_STATES,
    AttemptPurpose,
    AttemptStatus,
    BroadcastStatus,
    CallState,
    TaskStatus,
    WarningState,
    level_rank,
)
from dispatcher.warning_model import ParsedWarning

# Call states in which the person has been reached or tried (a pending call sent nothing).
_CALLED_STATES = (
    CallState.CALLING,
    CallState.ANSWERED,
    CallState.ESCALATED,
    CallState.UNANSWERED,
)


@dataclass
class Referenced:
    warnings: list[Warning] = field(default_factory=list)  # current heads, oldest first
    notes: list[str] = field(default_factory=list)


async def _head(session: AsyncSession, warning: Warning) -> Warning:
    """The warning at the end of the supersession chain that starts at `warning`."""
    seen = {warning.id}
    while True:
        newer = await session.scalar(
            select(Warning).where(Warning.supersedes_id == warning.id).order_by(Warning.id)
        )
        if newer is None or newer.id in seen:
            return warning
        seen.add(newer.id)
        warning = newer


async def _chain(session: AsyncSession, head: Warning) -> list[int]:
    """The ids of `head` and of every warning it superseded, directly or not."""
    ids = [head.id]
    previous = head.supersedes_id
    while previous is not None and previous not in ids:
        ids.append(previous)
        previous = await session.scalar(select(Warning.supersedes_id).where(Warning.id == previous))
    return ids


async def find_referenced(session: AsyncSession, parsed: ParsedWarning) -> Referenced:
    """The stored warnings this message's references point at, followed to their heads."""
    found = Referenced()
    if not parsed.references:
        found.notes.append(f"{parsed.msg_type} without references: nothing to act on")
        return found
    readable = parsed.reference_keys()
    if len(readable) < len(parsed.references.split()):
        found.notes.append("unreadable reference(s) ignored: expected sender,identifier,sent")
    for sender, identifier in readable:
        stored = await session.scalar(
            select(Warning).where(Warning.sender == sender, Warning.identifier == identifier)
        )
        if stored is None:
            found.notes.append(f"reference to unknown warning {sender},{identifier}")
        elif sender != parsed.sender:
            found.notes.append(f"reference to another sender's warning {identifier} ignored")
        elif stored.status != parsed.status:
            found.notes.append(
                f"reference to {stored.status} warning {stored.id} ignored "
                f"by a {parsed.status} message"
            )
        else:
            head = await _head(session, stored)
            if head not in found.warnings:
                found.warnings.append(head)
    return found


async def stop_warning(
    session: AsyncSession, warning: Warning, *, state: str, call_state: str, now: datetime
) -> None:
    """Set the warning's state; its open calls to `call_state`; its queued sends and
    broadcasts to cancelled. A send already handed to a provider cannot be called back."""
    warning.state = state
    await session.execute(
        update(Call)
        .where(Call.warning_id == warning.id, Call.state.in_(OPEN_CALL_STATES))
        .values(state=call_state, next_step_at=None)
    )
    await session.execute(
        update(Attempt)
        .where(Attempt.warning_id == warning.id, Attempt.status == AttemptStatus.QUEUED)
        .values(status=AttemptStatus.CANCELLED, updated_at=now)
    )
    await session.execute(
        update(Broadcast)
        .where(Broadcast.warning_id == warning.id, Broadcast.status == BroadcastStatus.QUEUED)
        .values(status=BroadcastStatus.CANCELLED)
    )


async def lock_warning(session: AsyncSession, warning_id: int) -> None:
    """Wait for a stage of the warning's calls being written (`dispatcher.fanout_stages`)
    and for jobs writing its sends (`dispatcher.owed_sends`) to commit, and keep the next
    from starting, so that stopping it finds every call and every queued send.

    FOR UPDATE, the one lock that excludes the sends jobs' FOR KEY SHARE: those jobs take
    the weakest lock so that a stage's FOR NO KEY UPDATE need not wait for them."""
    await session.execute(select(Warning.id).where(Warning.id == warning_id).with_for_update())


async def cancel_warnings(
    runtime: Runtime, session: AsyncSession, cancel: Warning, targets: list[Warning], now: datetime
) -> tuple[list[str], list[int]]:
    """Lift each target; returns notes and the ids of the lift notices queued."""
    notes: list[str] = []
    notice_ids: list[int] = []
    for target in targets:
        await lock_warning(session, target.id)
        if target.state == WarningState.CANCELLED:
            notes.append(f"warning {target.id} was already cancelled")
            continue
        called = set(
            await session.scalars(
                select(Call.responder_id).where(
                    Call.warning_id == target.id, Call.state.in_(_CALLED_STATES)
                )
            )
        )
        # tasks opened under the warnings this one superseded are lifted with it
        chain = await _chain(session, target)
        tasks = list(
            await session.scalars(
                select(DoorKnockTask).where(
                    DoorKnockTask.warning_id.in_(chain),
                    DoorKnockTask.status.in_([TaskStatus.OPEN, TaskStatus.ACCEPTED]),
                )
            )
        )
        await stop_warning(
            session, target, state=WarningState.CANCELLED, call_state=CallState.CANCELLED, now=now
        )
        for task in tasks:
            task.status, task.updated_at, task.finished_at = TaskStatus.CANCELLED, now, now
            task.escalate_at = None
            if task.assignee_id is not None:
                called.add(task.assignee_id)
        body = runtime.renderer.render("lifted", warning=target, cancel=cancel)
        for responder_id in sorted(called):
            notice = await sms_notice(
                session,
                to_responder_id=responder_id,
                purpose=AttemptPurpose.NOTICE,
                body=body,
                warning_id=cancel.id,
                call=None,
                now=now,
            )
            if notice is not None:
                await session.flush()
                notice_ids.append(notice.id)
        record(
            session,
            now,
            "warning.cancelled",
            warning_id=target.id,
            detail={"by": cancel.id, "told": len(called), "tasks_closed": len(tasks)},
        )
        notes.append(
            f"cancelled warning {target.id}: {len(called)} told, {len(tasks)} task(s) closed"
        )
    return notes, notice_ids


async def supersede(
    runtime: Runtime,
    session: AsyncSession,
    *,
    new: Warning,
    previous: Warning,
    target: Target,
    policy: Policy,
    now: datetime,
) -> tuple[FanoutResult, list[str]]:
    """Fan out an Update of `previous`: calls for the new warning, answers carried over
    unless the level rose, update notices for whoever needs no new call."""
    await lock_warning(session, previous.id)
    raised = level_rank(new.level) > level_rank(previous.level)
    new.supersedes_id = previous.id
    old_calls = {
        call.responder_id: call
        for call in await session.scalars(select(Call).where(Call.warning_id == previous.id))
    }
    reached = {r for r, call in old_calls.items() if call.state in _CALLED_STATES}
    await stop_warning(
        session,
        previous,
        state=WarningState.SUPERSEDED,
        call_state=CallState.SUPERSEDED,
        now=now,
    )
    # As for an Alert: the ladder's clock starts at first delivery (dispatcher.ladder), and a
    # low-level update at night waits for the morning when quiet hours are configured.
    send_at = defer(runtime.settings.quiet_hours, new.level, now)
    calls: list[Call] = []
    carried: list[int] = []
    for responder_id, region_id in sorted(target.responders.items()):
        old = old_calls.get(responder_id)
        keeps_answer = old is not None and old.answered_at is not None and not raised
        call = Call(
            warning_id=new.id,
            responder_id=responder_id,
            region_id=region_id,
            state=CallState.ANSWERED if keeps_answer else CallState.PENDING,
            started_at=now,
            next_step_at=None,
            previous_call_id=old.id if old is not None else None,
            # "1 K7" from the first message still answers a same-level update
            code=old.code if old is not None and not raised else None,
        )
        if keeps_answer and old is not None:
            call.answered_at, call.answer_meaning = old.answered_at, old.answer_meaning
            call.evacuated, call.status_at = old.evacuated, old.status_at
            carried.append(responder_id)
        calls.append(call)
    session.add_all(calls)
    await session.flush()
    await assign_codes(session, calls)
    result = FanoutResult(call_ids=[call.id for call in calls])
    addresses = await first_addresses(session, [c.responder_id for c in calls])
    attempts = [
        attempt
        for call in calls
        if call.state == CallState.PENDING
        for attempt in call_attempts(
            call, addresses.get(call.responder_id, {}), policy.channels, send_at
        )
    ]
    # Told, not asked: kept answers, and people the new area no longer covers.
    told = [*carried, *(r for r in old_calls if r not in target.responders)]
    body = runtime.renderer.render("update_notice", warning=new, previous=previous)
    for responder_id in told:
        if responder_id not in reached:
            continue  # never reached on the old warning: nothing to correct
        notice = await sms_notice(
            session,
            to_responder_id=responder_id,
            purpose=AttemptPurpose.NOTICE,
            body=body,
            warning_id=new.id,
            call=None,
            now=now,
        )
        if notice is not None:
            attempts.append(notice)
    broadcasts = [
        Broadcast(warning_id=new.id, speaker_id=sid, status=BroadcastStatus.QUEUED, due_at=send_at)
        for sid in target.speakers
    ]
    session.add_all(attempts)
    session.add_all(broadcasts)
    await session.flush()
    result.attempt_ids = [a.id for a in attempts]
    result.broadcast_ids = [b.id for b in broadcasts]
    record(
        session,
        now,
        "warning.superseded",
        warning_id=previous.id,
        detail={"by": new.id, "raised": raised, "answers_kept": len(carried)},
    )
    change = "raised" if raised else "not raised"
    note = f"supersedes warning {previous.id} (level {change}; {len(carried)} answer(s) kept)"
    return result, [note]


async def carried_call(session: AsyncSession, call: Call) -> Call:
    """The call an answer to `call` counts for. An answer to a superseded warning (a tap
    on the first message's link) counts for the same person's call on the Update, as long
    as the level did not rise; otherwise it stays on `call`, which no longer takes one."""
    current = call
    while True:
        warning = await session.get(Warning, current.warning_id)
        if warning is None or warning.state != WarningState.SUPERSEDED:
            return current
        newer = await session.scalar(
            select(Call).where(Call.previous_call_id == current.id).with_for_update()
        )
        if newer is None:
            return current
        newer_warning = await session.get(Warning, newer.warning_id)
        if newer_warning is None or level_rank(newer_warning.level) > level_rank(warning.level):
            return current
        current = newer


async def expire_due(runtime: Runtime) -> int:
    """Mark active warnings whose `expires` has passed as expired and stop them."""
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        due = list(
            await session.scalars(
                select(Warning)
                .where(Warning.state == WarningState.ACTIVE, Warning.expires <= now)
                .limit(runtime.settings.worker.sweep_batch)
                .with_for_update(skip_locked=True)
            )
        )
        for warning in due:
            await stop_warning(
                session, warning, state=WarningState.EXPIRED, call_state=CallState.EXPIRED, now=now
            )
            record(session, now, "warning.expired", warning_id=warning.id)
        return len(due)
