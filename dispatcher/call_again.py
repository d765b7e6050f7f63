"""The "call again" ladder step for a chunk of due calls: a new send on each of the
step's channels to each person's first usable contact, written by the database.

Called by `dispatcher.step_work.Steps.run` inside the chunk's transaction. A few calls'
sends are written there, marked enqueued, and enqueued once the chunk commits (see
`ladder.apply_steps`). A big group's are not: writing 200,000 sends was half of a sweep
over 100,000 silent calls, and nothing else the sweep does waits for them. The chunk
records them instead, one `CallAgainBatch` per warning, and a worker writes each batch's
sends (`write_call_again`, one job per batch, enqueued once every due call of the sweep
has taken its step: see `escalation._apply_due_steps`).

A batch's job writes its sends exactly once: it locks the batch and marks it written in
the same transaction. It skips calls answered or closed in the meantime, and writes
nothing once the warning is no longer active. A lost job is enqueued again by the sweep
once `worker.requeue_after_s` has passed; until a warning's batches are written, the
sweep does not take its calls for undeliverable (`dispatcher.owed_sends`).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.bulk import id_in
from dispatcher.config import LadderStep
from dispatcher.fanout import CONTACT_KIND
from dispatcher.models import Base, Call, CallAgainBatch, Contact
from dispatcher.owed_sends import take
from dispatcher.vocabulary import (
    OPEN_CALL_STATES,
    AttemptPurpose,
    AttemptStatus,
)

if TYPE_CHECKING:
    from dispatcher.ladder import DueCall
    from dispatcher.runtime import Runtime

log = logging.getLogger(__name__)

ATTEMPTS = Base.metadata.tables["attempts"]
# A group of at most this many calls (one step, one try) gets its sends in the sweep's
# own transaction: the usual sweep, a few people at a time, has them out at once.
WRITE_AT_ONCE = 200


@dataclass
class CallsAgain:
    """What the step left to enqueue once its chunk commits."""

    attempt_ids: list[int] = field(default_factory=list)  # sends written
    batch_ids: list[int] = field(default_factory=list)  # batches for workers to write


async def call_again(
    session: AsyncSession, items: list[tuple[DueCall, LadderStep, int]], now: datetime
) -> CallsAgain:
    """Send again on the step's channels, to each person's first usable contacts: one
    `INSERT ... SELECT` per set of channels and try, however many calls; or, for a
    group of more than `WRITE_AT_ONCE` calls, a batch per warning for workers."""
    groups: dict[tuple[tuple[str, ...], int], list[DueCall]] = defaultdict(list)
    for call, step, index in items:
        # each channel once, should the step list one twice
        groups[(tuple(dict.fromkeys(step.channels)), index + 2)].append(call)
    done = CallsAgain()
    batches: list[CallAgainBatch] = []
    for (channels, try_number), calls in groups.items():
        if len(calls) <= WRITE_AT_ONCE:
            call_ids = [call.id for call in calls]
            done.attempt_ids += await _send_again(session, call_ids, channels, try_number, now, now)
            continue
        by_warning: dict[int, list[int]] = defaultdict(list)
        for call in calls:
            by_warning[call.warning_id].append(call.id)
        batches += [
            CallAgainBatch(
                warning_id=warning_id,
                call_ids=json.dumps(call_ids),
                channels=json.dumps(channels),
                try_number=try_number,
                due_at=now,
                enqueued_at=now,
            )
            for warning_id, call_ids in by_warning.items()
        ]
    if batches:
        session.add_all(batches)
        await session.flush()
        done.batch_ids = [batch.id for batch in batches]
    return done


async def write_call_again(runtime: Runtime, batch_id: int) -> int:
    """Write and enqueue a batch's sends (a worker's job); returns how many. Nothing, if
    the batch is already written or its warning no longer active."""
    async with runtime.db.transaction() as session:
        now = runtime.clock.now()
        taken = await take(session, CallAgainBatch, batch_id, now)
        if taken is None:
            return 0
        batch, _ = taken
        attempt_ids = await _send_again(
            session,
            json.loads(batch.call_ids),
            tuple(json.loads(batch.channels)),
            batch.try_number,
            batch.due_at,
            now,
        )
    try:
        await runtime.queue.enqueue_attempts(attempt_ids)
    except Exception:  # committed: the sweep enqueues queued sends
        log.exception(
            "enqueue of %d call-again sends failed; the sweep will retry", len(attempt_ids)
        )
    return len(attempt_ids)


async def _send_again(
    session: AsyncSession,
    call_ids: list[int],
    channels: tuple[str, ...],
    try_number: int,
    due_at: datetime,
    now: datetime,
) -> list[int]:
    """Queue a send on each of `channels` for each of these calls still open whose
    person has a usable contact for it (their first, by position), marked enqueued at
    `now`, numbered channel by channel as a fan-out numbers first sends.

    Each person's first contact of each kind is looked up once, however many of the
    channels use it (voice and SMS both go to the first phone): the calls and their
    contacts are read into a CTE that PostgreSQL materializes, since a subquery in the
    select list that is also filtered on would be looked up twice a row."""
    kinds = sorted({CONTACT_KIND[channel] for channel in channels})
    firsts = (
        select(
            Call.id,
            Call.warning_id,
            Call.responder_id,
            *(
                select(Contact.value)
                .where(
                    Contact.responder_id == Call.responder_id,
                    Contact.kind == kind,
                    Contact.bad.is_(False),
                )
                .order_by(Contact.position)
                .limit(1)
                .scalar_subquery()
                .label(f"first_{kind}")
                for kind in kinds
            ),
        )
        .where(id_in(session, Call.id, call_ids), Call.state.in_(OPEN_CALL_STATES))
        .cte("firsts")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    sends = union_all(
        *(
            select(
                literal(number).label("number"),
                literal(channel).label("channel"),
                firsts.c.id,
                firsts.c.warning_id,
                firsts.c.responder_id,
                firsts.c[f"first_{CONTACT_KIND[channel]}"].label("address"),
            ).where(firsts.c[f"first_{CONTACT_KIND[channel]}"].is_not(None))
            for number, channel in enumerate(channels)
        )
    ).subquery("sends")
    due, at = literal(due_at, ATTEMPTS.c.due_at.type), literal(now, ATTEMPTS.c.due_at.type)
    rows = select(
        sends.c.warning_id,
        sends.c.id,
        sends.c.responder_id,
        literal(AttemptPurpose.CALL.value),
        sends.c.channel,
        sends.c.address,
        literal(AttemptStatus.QUEUED.value),
        literal(try_number),
        due,
        at,
        at,
    ).order_by(sends.c.number, sends.c.id)
    columns = ["warning_id", "call_id", "responder_id", "purpose", "channel", "address"]
    columns += ["status", "try_number", "due_at", "enqueued_at", "updated_at"]
    inserted = await session.scalars(
        insert(ATTEMPTS).from_select(columns, rows).returning(ATTEMPTS.c.id)
    )
    return sorted(inserted)
