"""A big warning's calls in stages, so its first sends start while the rest are written.

Writing 100,000 calls and their 300,000 first attempts takes seconds; in one transaction
no one could be sent anything until all of it committed. So the webhook's transaction
stores the warning, its broadcasts and the first `FIRST_STAGE` calls with their first
attempts, and each further `STAGE` calls commit in a transaction of their own, with a
`FanoutRange` naming them; the webhook answers 202 once every call is written. The
ranges' first attempts are written by workers (`write_first_sends`, one job per range,
enqueued as its stage commits), beside the sends of the stages before: writing the
attempts is the larger part, and the calls are what must be on record before the 202,
for a call on record is a person the sweep will not forget.

`Warning.fanned_out_at` stays empty until the last call is written, and
`Warning.fanout_lease_until` says how long the writer may be trusted to go on. If the
webhook's process dies between stages, the sweep (`resume_fan_outs`) finds the warning
unfinished once the lease has lapsed, targets it again from its stored message and
writes the calls still missing. One person is never called twice on one warning: calls
are unique per (warning, responder), and a writer whose stage collides with another's
stops. Each stage locks the warning row, as a Cancel or an Update does, so a warning
lifted mid-way gets no further calls; a range's job shares that lock, so a warning
lifted before its job ran gets no sends from it.

A range's job writes its sends exactly once: it locks the range and marks it written in
the same transaction, and skips calls that already have a first send. A lost job is
enqueued again by the sweep once `worker.requeue_after_s` has passed. Until a warning's
ranges are written, the sweep does not take its calls without sends for undeliverable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.areas import areas_shape
from dispatcher.cap import ParsedWarning, WarningRejected, parse_warning
from dispatcher.config import SenderSettings
from dispatcher.fanout import create_calls, first_attempts, sends_due
from dispatcher.models import Call, FanoutRange, Warning
from dispatcher.owed_sends import requeue_lapsed, take, unwritten
from dispatcher.runtime import Runtime
from dispatcher.senders import allowed_paths, check_areas
from dispatcher.targeting import Target, resolve_target
from dispatcher.vocabulary import WarningState

log = logging.getLogger(__name__)

# Small enough that the first sends start well within a second of the webhook.
FIRST_STAGE = 1_000
STAGE = 10_000
# A stage commits within a second or two; a writer silent this long has died.
LEASE = timedelta(minutes=2)


@dataclass
class StagesWritten:
    calls: int = 0
    finished: bool = False
    notes: list[str] = field(default_factory=list)


async def warning_target(
    runtime: Runtime, session: AsyncSession, parsed: ParsedWarning, sender: SenderSettings
) -> Target:
    """The warning's target, after refusing (403) an area the sender may not warn."""
    policy = runtime.settings.policy_for(parsed.level)
    paths = await allowed_paths(session, sender)
    target = await resolve_target(
        session,
        geocodes=parsed.geocodes(),
        area=areas_shape(parsed.areas),
        roles=policy.roles,
        aliases=runtime.settings.geocode_aliases,
        allowed_paths=paths,
    )
    check_areas(sender, parsed, target, paths)
    return target


def split_first_stage(
    responders: Sequence[tuple[int, int]],
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(responder id, region id) pairs in id order: those the webhook's own transaction
    calls, and the rest."""
    ordered = sorted(responders)
    return ordered[:FIRST_STAGE], ordered[FIRST_STAGE:]


async def write_stages(
    runtime: Runtime, warning_id: int, pending: Sequence[tuple[int, int]]
) -> StagesWritten:
    """Call `pending` in stages of `STAGE`, each committed on its own and its range's
    first sends enqueued for a worker to write; the last marks the warning fanned out.
    Stops early when the warning is no longer active or another writer got there first."""
    written = StagesWritten()
    ordered = sorted(pending)
    stages = [ordered[start : start + STAGE] for start in range(0, len(ordered), STAGE)] or [[]]
    for number, stage in enumerate(stages):
        last = number == len(stages) - 1
        try:
            range_id, go_on = await _write_stage(runtime, warning_id, stage, last)
        except IntegrityError:
            log.warning("warning %s: another writer is calling its responders", warning_id)
            written.notes.append("another writer took over the remaining calls")
            return written
        if not go_on:
            written.finished = True
            return written
        written.calls += len(stage)
        if range_id is not None:
            try:
                await runtime.queue.enqueue_first_sends([range_id])
            except Exception:  # the sweep re-enqueues from the database
                log.exception("enqueue failed for warning %s; the sweep will retry", warning_id)
    written.finished = True
    return written


async def _write_stage(
    runtime: Runtime, warning_id: int, stage: Sequence[tuple[int, int]], last: bool
) -> tuple[int | None, bool]:
    """One stage's calls, and the range of them whose first sends a worker writes;
    (the range's id, whether the warning still takes calls)."""
    async with runtime.db.transaction() as session:
        now = runtime.clock.now()
        # NO KEY UPDATE: rows referencing the warning may still be inserted meanwhile,
        # and the jobs writing earlier ranges' sends (FOR KEY SHARE) go on.
        warning = await session.scalar(
            select(Warning).where(Warning.id == warning_id).with_for_update(key_share=True)
        )
        if warning is None or warning.fanned_out_at is not None:
            return None, False
        if warning.state != WarningState.ACTIVE:
            warning.fanout_lease_until = None
            return None, False
        fanned = await create_calls(
            session,
            warning=warning,
            responders=stage,
            speakers=[],
            policy=runtime.settings.policy_for(warning.level),
            now=now,
            with_sends=False,
        )
        range_id = None
        if fanned.call_ids:
            fanout_range = FanoutRange(
                warning_id=warning_id,
                first_call_id=fanned.call_ids[0],
                last_call_id=fanned.call_ids[-1],
                due_at=sends_due(warning, now, runtime.settings.quiet_hours),
                enqueued_at=now,
            )
            session.add(fanout_range)
            await session.flush()
            range_id = fanout_range.id
        if last:
            warning.fanned_out_at = now
            warning.fanout_lease_until = None
        else:
            warning.fanout_lease_until = now + LEASE
        return range_id, True


async def write_first_sends(runtime: Runtime, range_id: int) -> int:
    """Write and enqueue the first sends of a range's calls (a worker's job); returns how
    many. Nothing, if the range is already written or its warning no longer active."""
    async with runtime.db.transaction() as session:
        taken = await take(session, FanoutRange, range_id, runtime.clock.now())
        if taken is None:
            return 0
        fanout_range, warning = taken
        attempt_ids = await first_attempts(
            session,
            warning.id,
            (fanout_range.first_call_id, fanout_range.last_call_id),
            runtime.settings.policy_for(warning.level).channels,
            fanout_range.due_at,
            runtime.clock.now(),
            unsent_only=True,
        )
    try:
        await runtime.queue.enqueue_attempts(attempt_ids)
        if await _all_written(runtime, fanout_range.warning_id):
            # The ANALYZE after the webhook saw none of these sends: the planner would
            # take a big warning's attempts for a handful (`dispatcher.statistics`).
            await runtime.queue.enqueue_statistics()
    except Exception:  # committed: the sweep enqueues queued sends
        log.exception("enqueue of %d first sends failed; the sweep will retry", len(attempt_ids))
    return len(attempt_ids)


async def _all_written(runtime: Runtime, warning_id: int) -> bool:
    async with runtime.db.sessions() as session:
        found = await session.scalar(
            select(FanoutRange.id).where(unwritten(FanoutRange, warning_id)).limit(1)
        )
    return found is None


async def resume_fan_outs(runtime: Runtime) -> int:
    """Finish the fan-out of every active warning whose writer's lease lapsed, and
    enqueue again the lost jobs of call ranges still without sends; returns how many
    calls were written."""
    await requeue_lapsed(runtime, FanoutRange, runtime.queue.enqueue_first_sends)
    now = runtime.clock.now()
    unfinished = (
        Warning.fanned_out_at.is_(None),
        Warning.state == WarningState.ACTIVE,
        or_(Warning.fanout_lease_until.is_(None), Warning.fanout_lease_until < now),
    )
    async with runtime.db.sessions() as session:
        warning_ids = list(await session.scalars(select(Warning.id).where(*unfinished)))
    written = 0
    for warning_id in warning_ids:
        async with runtime.db.transaction() as session:
            claimed = await session.execute(
                update(Warning)
                .where(Warning.id == warning_id, *unfinished)
                .values(fanout_lease_until=now + LEASE)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue  # another worker's sweep took it
            pending, note = await _missing_calls(runtime, session, warning_id)
            if note:
                log.error("warning %s: %s", warning_id, note)
                warning = await session.get(Warning, warning_id)
                assert warning is not None
                warning.notes = [*warning.notes, note]
                warning.fanned_out_at = now
                continue
        log.warning("warning %s: resuming its fan-out, %d calls to write", warning_id, len(pending))
        written += (await write_stages(runtime, warning_id, pending)).calls
    return written


async def _missing_calls(
    runtime: Runtime, session: AsyncSession, warning_id: int
) -> tuple[list[tuple[int, int]], str | None]:
    """(responder id, region id) of those the warning targets but has not called yet, or
    why its target cannot be worked out again."""
    warning = await session.get(Warning, warning_id)
    assert warning is not None
    senders = {s.name: s for s in runtime.settings.effective_senders}
    sender = senders.get(warning.api_sender)
    if sender is None:
        return [], f"fan-out stopped: sender key {warning.api_sender!r} is no longer configured"
    if warning.raw_body is None:
        return [], "fan-out stopped: the warning's message was not stored"
    try:
        parsed = parse_warning(warning.raw_body, warning.content_type)
        target = await warning_target(runtime, session, parsed, sender)
    except WarningRejected as refused:
        return [], f"fan-out stopped: the warning no longer targets: {refused}"
    called = set(
        await session.scalars(select(Call.responder_id).where(Call.warning_id == warning_id))
    )
    return [pair for pair in sorted(target.responders.items()) if pair[0] not in called], None
