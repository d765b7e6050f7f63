"""Records of sends a worker still owes: a big fan-out's call ranges (`FanoutRange`,
`dispatcher.fanout_stages`) and a big sweep's call-again batches (`CallAgainBatch`,
`dispatcher.call_again`).

Each record's sends are written by a job of its own, exactly once: the job takes the
record (locks it and marks it written in its transaction) before writing. Until then
the record counts as unwritten, and the sweep does not take its warning's calls for
undeliverable; a record still unwritten `worker.requeue_after_s` after its job was
enqueued had its job lost, and the sweep enqueues the job again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from dispatcher.models import CallAgainBatch, FanoutRange, Warning
from dispatcher.runtime import Runtime
from dispatcher.vocabulary import WarningState

log = logging.getLogger(__name__)

Owed = TypeVar("Owed", FanoutRange, CallAgainBatch)


async def take(
    session: AsyncSession, model: type[Owed], record_id: int, now: datetime
) -> tuple[Owed, Warning] | None:
    """The record and its warning, for its job to write the sends; None if they are
    written already or the warning is no longer active. The record is marked written
    either way, and its warning locked shared with its other jobs and with the stage
    writing its next calls, exclusive of a Cancel's or an Update's lock (FOR UPDATE,
    `dispatcher.lifecycle.lock_warning`): a stage waiting for every job in flight to
    commit made the webhook's 202 wait for the workers."""
    record = await session.scalar(select(model).where(model.id == record_id).with_for_update())
    if record is None or record.written_at is not None:
        return None
    record.written_at = now
    warning = await session.scalar(
        select(Warning)
        .where(Warning.id == record.warning_id)
        .with_for_update(read=True, key_share=True)
    )
    if warning is None or warning.state != WarningState.ACTIVE:
        return None
    return record, warning


def unwritten(
    model: type[Owed], warning_id: int | ColumnElement[int] | InstrumentedAttribute[int]
) -> ColumnElement[bool]:
    """The warning's records whose sends are not written yet."""
    return and_(model.warning_id == warning_id, model.written_at.is_(None))


async def requeue_lapsed(
    runtime: Runtime, model: type[Owed], enqueue: Callable[[Iterable[int]], Awaitable[int]]
) -> int:
    """Enqueue again the jobs of records still unwritten `worker.requeue_after_s` after
    they were last enqueued (a lost job; the same job id makes a queued one a no-op)."""
    now = runtime.clock.now()
    since = now - timedelta(seconds=runtime.settings.worker.requeue_after_s)
    async with runtime.db.transaction() as session:
        record_ids = list(
            await session.scalars(
                update(model)
                .where(model.written_at.is_(None), model.enqueued_at <= since)
                .values(enqueued_at=now)
                .returning(model.id)
            )
        )
    if record_ids:
        log.warning("jobs of %d unwritten %s enqueued again", len(record_ids), model.__tablename__)
        await enqueue(record_ids)
    return len(record_ids)
