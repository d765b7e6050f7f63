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
(`dispatcher.step_work`), then writes the calls (on PostgreSQL one UPDATE per rung and
level, their next times computed in SQL) and the audit rows (one insert) in bulk.
Everything runs in the caller's transaction, which holds the calls' locks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Interval, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher import step_work
from dispatcher.bulk import id_in, insert_columns, update_rows
from dispatcher.config import LadderStep, Policy, Settings
from dispatcher.models import Attempt, Base, Call
from dispatcher.models import Warning as WarningRow
from dispatcher.quiet_hours import quiet_until
from dispatcher.vocabulary import OPEN_CALL_STATES, AttemptPurpose, CallState

if TYPE_CHECKING:
    from dispatcher.runtime import Runtime

CALLS, AUDIT = Base.metadata.tables["calls"], Base.metadata.tables["audit_events"]
WARNINGS = Base.metadata.tables["warnings"]
# What the sweep reads of a due call: plain values (Core columns: no ORM row loading for
# the thousands it moves).
DUE_COLUMNS = (
    CALLS.c.id,
    CALLS.c.warning_id,
    CALLS.c.responder_id,
    CALLS.c.region_id,
    CALLS.c.origin,
    CALLS.c.state,
    CALLS.c.escalation_step,
    CALLS.c.next_step_at,
    CALLS.c.door_knock_task_id,
    WARNINGS.c.level,
)
# What a step changes in a call, id first (SQLite's rows from `_Moves`).
CALL_COLUMNS = ["id", "state", "escalation_step", "next_step_at"]


class DueCall(NamedTuple):
    """A due call the sweep has locked, with its warning's level (`DUE_COLUMNS`).

    A named tuple, not a frozen dataclass: a sweep over 100,000 calls makes 100,000 of
    them, and a frozen dataclass's `__init__` (a guarded `__setattr__` per field) took a
    tenth of the sweep's own time."""

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

    @classmethod
    def of(cls, row: Sequence[Any]) -> DueCall:
        """From a row of `DUE_COLUMNS`, in their order."""
        return cls._make(row)


@dataclass
class StepOutcome:
    """What a chunk of steps did: how many steps ran, and the sends (and the batches of
    call-again sends for workers to write) to enqueue on commit."""

    applied: int = 0
    attempt_ids: list[int] = field(default_factory=list)
    batch_ids: list[int] = field(default_factory=list)


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
    moves = _Moves()
    events = _Events()
    details: dict[int, dict[str, Any]] = {}
    mornings = {
        level: quiet_until(settings.quiet_hours, level, now) for level in {c.level for c in calls}
    }
    # What every call at one rung of one level gets: the step, its audit detail (one
    # object, encoded once) and where the call goes next.
    rungs: dict[tuple[str, int], tuple[LadderStep, dict[str, Any], str, timedelta | None]] = {}
    for call in calls:
        policy = settings.policy_for(call.level)
        index = call.escalation_step
        if index >= len(policy.ladder):
            moves.add(call, CallState.UNANSWERED, index, None)
            continue
        if (morning := mornings[call.level]) is not None:
            moves.add(call, call.state, index, morning)
            events.add(call, "call.deferred", {"until": morning.isoformat()})
            continue
        rung = rungs.get((call.level, index))
        if rung is None:
            step = policy.ladder[index]
            last = index + 1 == len(policy.ladder)
            rung = rungs[(call.level, index)] = (
                step,
                {"step": index + 1, "kind": step.step},
                CallState.UNANSWERED if last else CallState.ESCALATED,
                None if last else step_gap(policy, index + 1),
            )
        step, detail, state, gap = rung
        work.add(call, policy, step, index)
        details[call.id] = detail
        # From when this step was due, not when the sweep got to it: no drift.
        moves.add(call, state, index + 1, gap)
        outcome.applied += 1
    done = await work.run(session, now)
    await moves.write(session, now)
    if done.task_of:
        await update_rows(
            session, CALLS, ["id", "door_knock_task_id"], [list(i) for i in done.task_of.items()]
        )
    for call in calls:
        if (base := details.get(call.id)) is not None:
            extra = done.details.get(call.id)
            events.add(call, "call.escalated", {**base, **extra} if extra else base)
    await events.write(session, now)
    outcome.attempt_ids, outcome.batch_ids = done.attempt_ids, done.batch_ids
    # Told once the calls point at their task, so the message names everyone silent there.
    for task in done.new_tasks:
        handovers = await step_work.hand_over(runtime, session, task, now)
        outcome.attempt_ids += [attempt.id for attempt in handovers]
    return outcome


class _Moves:
    """Where each call goes, grouped by destination: (state, step, next) where next is a
    time, None, or a gap after the call's `next_step_at` (or now, if it has none)."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, int, datetime | timedelta | None], list[DueCall]] = {}

    def add(
        self, call: DueCall, state: str, step: int, next_at: datetime | timedelta | None
    ) -> None:
        self.groups.setdefault((state, step, next_at), []).append(call)

    async def write(self, session: AsyncSession, now: datetime) -> None:
        """One UPDATE a group on PostgreSQL; SQLite, which keeps times as text and cannot
        add to them, is sent each call's own values."""
        if session.get_bind().dialect.name != "postgresql":
            rows = [
                [call.id, state, step, _next_time(call, next_at, now)]
                for (state, step, next_at), calls in self.groups.items()
                for call in calls
            ]
            await update_rows(session, CALLS, CALL_COLUMNS, rows)
            return
        for (state, step, next_at), calls in self.groups.items():
            value: Any = next_at
            if isinstance(next_at, timedelta):
                start = func.coalesce(Call.next_step_at, literal(now, Call.next_step_at.type))
                value = start + literal(next_at, Interval())
            await session.execute(
                update(Call)
                .where(id_in(session, Call.id, [call.id for call in calls]))
                .values(state=state, escalation_step=step, next_step_at=value)
                .execution_options(synchronize_session=False)
            )


def _next_time(call: DueCall, next_at: datetime | timedelta | None, now: datetime) -> Any:
    if isinstance(next_at, timedelta):
        return (call.next_step_at or now) + next_at
    return next_at


class _Events:
    """The chunk's audit rows, as columns for one bulk insert."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {
            "kind": [],
            "warning_id": [],
            "call_id": [],
            "detail": [],
        }

    def add(self, call: DueCall, kind: str, detail: dict[str, Any]) -> None:
        self.columns["kind"].append(kind)
        self.columns["warning_id"].append(call.warning_id)
        self.columns["call_id"].append(call.id)
        self.columns["detail"].append(detail)

    async def write(self, session: AsyncSession, now: datetime) -> None:
        await insert_columns(session, AUDIT, self.columns, {"at": now, "actor": "system"})
