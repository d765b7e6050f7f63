"""One call's escalation ladder: when its clock starts and what each step does.

The clock starts at the call's first send a provider accepted (`note_delivery`), not at
the warning, so a throttled send is not punished. Each step runs `at_min` minutes after
that: `call_again` on the listed channels, `call_backup`, `notify_supervisor` and
`notify_up` (queued as `LadderNotice`s and sent as one digest per person by
`dispatcher.digests`), and `door_knock` (the region's task; its assignee is told once the
chunk's steps are done, so the message lists everyone silent there). A call that could
not be delivered on any channel jumps straight to the door-knock step. Quiet hours defer
a low-level call's steps to the morning.

`apply_steps` moves a whole chunk of due calls one rung on at once: it sorts them by the
step they take and does each step's work for all of them together
(`dispatcher.step_work`), then writes the calls and the audit rows in bulk. Everything
runs in the caller's transaction, which holds the calls' locks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher import step_work
from dispatcher.bulk import id_in, insert_rows, update_rows
from dispatcher.config import Policy, Settings
from dispatcher.models import Attempt, Base, Call
from dispatcher.models import Warning as WarningRow
from dispatcher.quiet_hours import quiet_until
from dispatcher.vocabulary import OPEN_CALL_STATES, AttemptPurpose, CallState

if TYPE_CHECKING:
    from dispatcher.runtime import Runtime

# What the sweep reads of a due call: plain values, not ORM objects (it moves thousands).
DUE_COLUMNS = (
    Call.id,
    Call.warning_id,
    Call.responder_id,
    Call.region_id,
    Call.origin,
    Call.state,
    Call.escalation_step,
    Call.next_step_at,
    Call.door_knock_task_id,
    WarningRow.level,
)


CALLS, AUDIT = Base.metadata.tables["calls"], Base.metadata.tables["audit_events"]
# What a step changes in a call, id first (the keys of `apply_steps`'s changes, in order).
CALL_COLUMNS = ["id", "state", "escalation_step", "next_step_at", "door_knock_task_id"]


@dataclass(frozen=True)
class DueCall:
    """A due call the sweep has locked, with its warning's level (`DUE_COLUMNS`)."""

    id: int
    warning_id: int
    responder_id: int
    region_id: int
    origin: str
    state: str
    escalation_step: int
    next_step_at: datetime | None
    door_knock_task_id: int | None
    level: str


@dataclass
class StepOutcome:
    """What a chunk of steps did: how many steps ran, and the sends to enqueue on commit."""

    applied: int = 0
    attempt_ids: list[int] = field(default_factory=list)


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


async def note_deliveries(
    session: AsyncSession, settings: Settings, delivered: Mapping[int, datetime]
) -> None:
    """`note_delivery` for many calls at once (call id -> when its send was accepted),
    their rows locked in id order; a call whose clock already runs is left alone. Read
    and written as columns, one UPDATE for all (a worker records 100,000 of these for a
    red warning)."""
    if not delivered:
        return
    rows = (
        await session.execute(
            select(Call.id, Call.state, Call.next_step_at, Call.escalation_step, WarningRow.level)
            .join(WarningRow, WarningRow.id == Call.warning_id)
            .where(id_in(session, Call.id, sorted(delivered)), Call.delivered_at.is_(None))
            .order_by(Call.id)
            .with_for_update(of=Call)
        )
    ).all()
    changes = []
    for call_id, state, next_step_at, escalation_step, level in rows:
        at = delivered[call_id]
        policy = settings.policy_for(level)
        waiting = state in OPEN_CALL_STATES and next_step_at is None
        if waiting and escalation_step < len(policy.ladder):
            next_step_at = at + step_gap(policy, escalation_step)
        changes.append((call_id, at, next_step_at))
    await update_rows(
        session,
        Call.__table__,  # type: ignore[arg-type]
        ("id", "delivered_at", "next_step_at"),
        changes,
    )


def undeliverable_target(policy: Policy) -> int | None:
    """The step an undeliverable call jumps to: door-knocking, else the ladder's last step."""
    index = policy.door_knock_index()
    if index is None and policy.ladder:
        index = len(policy.ladder) - 1
    return index


async def apply_steps(
    runtime: Runtime, session: AsyncSession, calls: Sequence[DueCall], now: datetime
) -> StepOutcome:
    """Take each call's next ladder step (or defer it, or close a finished ladder).

    The new sends are inserted with `enqueued_at` set: the caller enqueues them once the
    transaction commits (and the sweep's requeue finds them if that enqueue is lost).
    """
    settings = runtime.settings
    outcome = StepOutcome()
    work = step_work.Steps()
    changes: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    details: dict[int, dict[str, Any]] = {}
    mornings = {
        level: quiet_until(settings.quiet_hours, level, now) for level in {c.level for c in calls}
    }
    for call in calls:
        policy = settings.policy_for(call.level)
        index = call.escalation_step
        change: dict[str, Any] = {
            "id": call.id,
            "state": call.state,
            "escalation_step": index,
            "next_step_at": call.next_step_at,
            "door_knock_task_id": call.door_knock_task_id,
        }
        changes.append(change)
        if index >= len(policy.ladder):
            change.update(state=CallState.UNANSWERED, next_step_at=None)
            continue
        if (morning := mornings[call.level]) is not None:
            change["next_step_at"] = morning
            events.append(_event(now, "call.deferred", call, {"until": morning.isoformat()}))
            continue
        step = policy.ladder[index]
        work.add(call, policy, step, index)
        details[call.id] = {"step": index + 1, "kind": step.step}
        change["escalation_step"] = index + 1
        if index + 1 < len(policy.ladder):
            change["state"] = CallState.ESCALATED
            # From when this step was due, not when the sweep got to it: no drift.
            change["next_step_at"] = (call.next_step_at or now) + step_gap(policy, index + 1)
        else:
            change.update(state=CallState.UNANSWERED, next_step_at=None)
        outcome.applied += 1
    done = await work.run(session, now)
    for call_id, extra in done.details.items():
        details[call_id].update(extra)
    for change in changes:
        change["door_knock_task_id"] = done.task_of.get(change["id"], change["door_knock_task_id"])
    if changes:
        await update_rows(session, CALLS, CALL_COLUMNS, [list(c.values()) for c in changes])
    events += [
        _event(now, "call.escalated", call, details[call.id])
        for call in calls
        if call.id in details
    ]
    if events:
        await insert_rows(session, AUDIT, list(events[0]), [list(e.values()) for e in events])
    outcome.attempt_ids = done.attempt_ids
    # Told once the calls point at their task, so the message names everyone silent there.
    for task in done.new_tasks:
        handovers = await step_work.hand_over(runtime, session, task, now)
        outcome.attempt_ids += [attempt.id for attempt in handovers]
    return outcome


def _event(now: datetime, kind: str, call: DueCall, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": now,
        "kind": kind,
        "warning_id": call.warning_id,
        "call_id": call.id,
        "actor": "system",
        "detail": detail,
    }
