"""The sweep: the periodic job that moves every ladder on (safe in every worker).

Each phase is its own transaction and locks what it takes (`FOR UPDATE SKIP LOCKED` on
PostgreSQL), so a worker killed mid-sweep leaves nothing half done: its transaction rolls
back and the next sweep, in any worker, does the work once. The phases, in order:

1. calls that could not be delivered on any channel jump to the door-knock step;
2. due calls of active warnings take their next ladder step (`dispatcher.ladder`), and new
   door-knock tasks are handed to their assignees;
3. queued supervisor / next-level notices go out, one digest per person;
4. door-knock tasks nobody accepted in time go to the supervisor;
5. speakers that never confirmed playback are failed; due sends are re-enqueued.

Every phase works through all that is due, a chunk of `worker.sweep_batch` rows (at most
`MAX_CHUNK`) per transaction, and works on a chunk in bulk: a sweep over 100,000 silent
calls is a few hundred statements, not a few per call. Due calls are stepped
`worker.sweep_parallel` chunks at a time on PostgreSQL, each lane in a transaction and on a
connection of its own, so the database's cores share the writing. The sends a chunk
creates are enqueued as soon as it commits; a big chunk's call-again sends are left to
workers (`dispatcher.call_again`), whose jobs are enqueued once every due call has taken
its step. Nothing here acts on a call or warning that is no longer open (answered,
cancelled, expired): every query filters on the warning's and the call's state.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    insert,
    literal,
    or_,
    select,
    union,
    update,
)

from dispatcher.digests import escalate_tasks, send_digests
from dispatcher.doorknock import open_speaker_task
from dispatcher.fanout_stages import resume_fan_outs
from dispatcher.ladder import (
    CALLS,
    DUE_COLUMNS,
    WARNINGS,
    DueCall,
    StepOutcome,
    apply_steps,
    undeliverable_target,
)
from dispatcher.lifecycle import expire_due
from dispatcher.models import (
    Attempt,
    AuditEvent,
    Broadcast,
    Call,
    CallAgainBatch,
    FanoutRange,
    Warning,
)
from dispatcher.owed_sends import requeue_lapsed, unwritten
from dispatcher.runtime import Runtime
from dispatcher.vocabulary import (
    LEVELS,
    OPEN_CALL_STATES,
    AttemptPurpose,
    AttemptStatus,
    BroadcastStatus,
    CallState,
    WarningState,
)

log = logging.getLogger(__name__)
# Rows per transaction at most, whatever `sweep_batch` says: the chunk's ids travel as
# bound parameters, of which SQLite and asyncpg take about 32,000 a statement.
MAX_CHUNK = 5000
# A call with a send in one of these may still get through (a robocall nobody picked up,
# no_answer or busy, did not).
LIVE_ATTEMPT_STATES = (
    AttemptStatus.QUEUED,
    AttemptStatus.SENDING,
    AttemptStatus.SENT,
    AttemptStatus.DELIVERED,
)
# Sends that did not get through. A cancelled one is left out: sends are cancelled only
# when their call is answered or their warning lifted, never for a call still open.
FAILED_ATTEMPT_STATES = tuple(
    s for s in AttemptStatus if s not in (*LIVE_ATTEMPT_STATES, AttemptStatus.CANCELLED)
)


@dataclass
class SweepReport:
    undeliverable: int = 0
    steps: int = 0
    digests: int = 0
    tasks_escalated: int = 0
    requeued: int = 0
    speakers_failed: int = 0
    expired: int = 0
    # calls of big warnings whose writer died mid-way (dispatcher.fanout_stages)
    fan_outs_resumed: int = 0


async def sweep(runtime: Runtime) -> SweepReport:
    report = SweepReport()
    report.fan_outs_resumed = await resume_fan_outs(runtime)
    report.expired = await expire_due(runtime)
    report.undeliverable = await _jump_undeliverable(runtime)
    report.steps = await _apply_due_steps(runtime)
    report.digests = await send_digests(runtime)
    report.tasks_escalated = await escalate_tasks(runtime)
    report.speakers_failed = await _fail_silent_speakers(runtime)
    report.requeued = await _requeue(runtime)
    if any(vars(report).values()):
        log.info("sweep: %s", report)
    return report


def chunk_size(runtime: Runtime) -> int:
    return min(runtime.settings.worker.sweep_batch, MAX_CHUNK)


async def _enqueue(runtime: Runtime, attempt_ids: list[int], batch_ids: list[int]) -> None:
    """Enqueue committed sends and call-again batches; if that fails, `_requeue` finds
    them later."""
    try:
        if attempt_ids:
            await runtime.queue.enqueue_attempts(attempt_ids)
        if batch_ids:
            await runtime.queue.enqueue_call_again(batch_ids)
    except Exception:
        log.exception(
            "enqueue of %d sends and %d call-again batches failed; the sweep will retry",
            len(attempt_ids),
            len(batch_ids),
        )


async def _jump_undeliverable(runtime: Runtime) -> int:
    """Calls no channel could deliver go straight to door-knocking (nothing else will work).

    Undeliverable: no send of the call is queued, in flight, accepted or delivered (every
    one failed, or the person has no usable contact), and it has not reached that step.
    """
    targets = {level: undeliverable_target(runtime.settings.policy_for(level)) for level in LEVELS}
    behind = [
        and_(Warning.level == level, Call.escalation_step < target)
        for level, target in targets.items()
        if target is not None
    ]
    if not behind:
        return 0
    live = exists().where(
        Attempt.call_id == Call.id,
        Attempt.purpose == AttemptPurpose.CALL,
        Attempt.status.in_(LIVE_ATTEMPT_STATES),
    )
    # Only a call never sent (a send makes it `calling`) or with a send that did not get
    # through can be undeliverable: those few are found first, so the check for a live
    # send is made for them, not for every open call of a big warning (~0.4 s at
    # 100,000). Both come from active warnings alone, found by index, and are joined to
    # the calls as one set: the failed sends of every warning ever sent, asked inside an
    # OR, were rescanned for each open call once they outgrew `work_mem` (migration 0020).
    never_sent = (
        select(Call.id)
        .join(Warning, Warning.id == Call.warning_id)
        .where(Warning.state == WarningState.ACTIVE, Call.state == CallState.PENDING)
    )
    failed = (
        select(Attempt.call_id)
        .join(Warning, Warning.id == Attempt.warning_id)
        .where(
            Warning.state == WarningState.ACTIVE,
            Attempt.status.in_(FAILED_ATTEMPT_STATES),
            Attempt.purpose == AttemptPurpose.CALL,
        )
    )
    candidates = union(never_sent, failed).subquery("candidates")
    # A big warning's calls whose first sends (or call-again sends) a worker has not
    # written yet have no live send.
    owed = or_(
        exists().where(unwritten(FanoutRange, Warning.id)),
        exists().where(unwritten(CallAgainBatch, Warning.id)),
    )
    size, jumped = chunk_size(runtime), 0
    while True:
        now = runtime.clock.now()
        async with runtime.db.transaction() as session:
            rows = (
                await session.execute(
                    select(Call.id, Call.warning_id, Warning.level)
                    .join(Warning, Warning.id == Call.warning_id)
                    .where(
                        Call.state.in_(OPEN_CALL_STATES),
                        Warning.state == WarningState.ACTIVE,
                        or_(*behind),
                        Call.id.in_(select(candidates.c[0])),
                        ~owed,
                        ~live,
                    )
                    .order_by(Call.id)
                    .limit(size)
                    .with_for_update(skip_locked=True, of=Call)
                )
            ).all()
            by_target: dict[int, list[int]] = defaultdict(list)
            for call_id, _, level in rows:
                target = targets[level]
                assert target is not None
                by_target[target].append(call_id)
            for target, call_ids in by_target.items():
                await session.execute(
                    update(Call)
                    .where(Call.id.in_(call_ids))
                    .values(escalation_step=target, next_step_at=now)
                )
            if rows:
                await session.execute(
                    insert(AuditEvent),
                    [
                        {
                            "at": now,
                            "kind": "call.undeliverable",
                            "warning_id": warning_id,
                            "call_id": call_id,
                            "actor": "system",
                            "detail": {"jump_to_step": targets[level] + 1},  # type: ignore[operator]
                        }
                        for call_id, warning_id, level in rows
                    ],
                )
        jumped += len(rows)
        if len(rows) < size:
            return jumped


async def _apply_due_steps(runtime: Runtime) -> int:
    """Step every due call, `sweep_parallel` chunks at once on PostgreSQL (one at a time
    on SQLite, which has one writer). `SKIP LOCKED` gives each lane its own calls; a lane
    stops at a short chunk, when what is left is due to no one or held by another lane.
    The lanes start once a first chunk, taken alone, came back full.
    A lane that fails lets the others finish the chunk they hold, then the sweep raises:
    what committed is done once, what rolled back is due again for the next sweep.

    A chunk's sends are enqueued as it commits; its call-again batches once every lane
    is done. Writing a big warning's 200,000 call-again sends is the workers' larger
    task: begun at once, it took the cores from the chunks still to step, whose locked
    calls hold up the answers that arrive for them, and doubled the sweep. The sends
    leave seconds later instead, on a step that comes minutes after the last."""
    size = chunk_size(runtime)
    lanes = 1 if runtime.db.is_sqlite else runtime.settings.worker.sweep_parallel
    failed: list[BaseException] = []
    batch_ids: list[int] = []

    more = True

    async def lane(chunks: int | None = None) -> int:
        nonlocal more
        applied = 0
        try:
            while not failed and chunks != 0:
                taken, outcome = await _step_chunk(runtime, size)
                applied += outcome.applied
                batch_ids.extend(outcome.batch_ids)
                await _enqueue(runtime, outcome.attempt_ids, [])
                more = taken == size
                if not more:
                    break
                chunks = None if chunks is None else chunks - 1
        except BaseException as error:
            failed.append(error)
        return applied

    try:
        # The first chunk alone: a sweep with less than a chunk due (most of them) is not
        # split between lanes, which would each take part of a region's silent calls and
        # tell a door-knock task's assignee of only some of them.
        applied = await lane(chunks=1)
        if more and not failed:
            applied += sum(await asyncio.gather(*(lane() for _ in range(lanes))))
    finally:
        await _enqueue(runtime, [], batch_ids)
    if failed:
        raise failed[0]
    return applied


async def _step_chunk(runtime: Runtime, size: int) -> tuple[int, StepOutcome]:
    """Lock up to `size` due calls and take their steps, in one transaction; returns how
    many it took and what they did."""
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        rows = (
            await session.execute(
                select(*DUE_COLUMNS)
                .join(WARNINGS, WARNINGS.c.id == CALLS.c.warning_id)
                .where(
                    CALLS.c.state.in_(OPEN_CALL_STATES),
                    CALLS.c.next_step_at <= now,
                    WARNINGS.c.state == "active",
                )
                # the due index's own order: a tie-break on id would sort every due
                # call for each chunk (external sort at 100,000 due calls)
                .order_by(CALLS.c.next_step_at)
                .limit(size)
                .with_for_update(skip_locked=True, of=CALLS)
            )
        ).all()
        outcome = await apply_steps(runtime, session, [DueCall.of(row) for row in rows], now)
    return len(rows), outcome


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


def _inline(status: AttemptStatus) -> ColumnElement[str]:
    """A status written into the statement, not sent as a parameter: only then can the
    planner use a partial index on it (`ix_attempts_requeue`, `ix_attempts_sending`) in
    the generic plan of a prepared statement."""
    return literal(str(status), literal_execute=True)


def unqueued_sends(now: datetime, quiet_since: datetime, size: int) -> Select[int]:
    """Up to `size` queued sends that are due and were never enqueued, or last enqueued
    before `quiet_since` (their job lost)."""
    never_or_long_ago = or_(Attempt.enqueued_at.is_(None), Attempt.enqueued_at <= quiet_since)
    return (
        select(Attempt.id)
        .where(Attempt.status == _inline(AttemptStatus.QUEUED), Attempt.due_at <= now)
        .where(never_or_long_ago)
        .limit(size)
    )


async def _requeue(runtime: Runtime) -> int:
    """Enqueue what is due but not in flight, a chunk at a time; arq's job ids make
    repeats harmless. Sends are written with `enqueued_at` set when their writer enqueues
    them after commit: those whose enqueue was lost are found `requeue_after_s` later."""
    now = runtime.clock.now()
    worker = runtime.settings.worker
    quiet_since = now - timedelta(seconds=worker.requeue_after_s)
    async with runtime.db.transaction() as session:
        await session.execute(
            update(Attempt)
            .where(
                Attempt.status == _inline(AttemptStatus.SENDING),
                Attempt.updated_at <= now - timedelta(seconds=worker.send_lease_s),
            )
            .values(status=AttemptStatus.QUEUED)
        )
    requeued = await requeue_lapsed(runtime, CallAgainBatch, runtime.queue.enqueue_call_again)
    size = chunk_size(runtime)
    while True:
        # Each chunk is marked enqueued before it is enqueued, so the next one moves on.
        async with runtime.db.transaction() as session:
            attempt_ids = list(await session.scalars(unqueued_sends(now, quiet_since, size)))
            broadcast_due = or_(
                Broadcast.enqueued_at.is_(None), Broadcast.enqueued_at <= quiet_since
            )
            broadcast_ids = list(
                await session.scalars(
                    select(Broadcast.id)
                    .where(
                        Broadcast.status == BroadcastStatus.QUEUED,
                        Broadcast.due_at <= now,
                        broadcast_due,
                    )
                    .limit(size)
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
        requeued += len(attempt_ids) + len(broadcast_ids)
        if len(attempt_ids) < size and len(broadcast_ids) < size:
            return requeued
