"""What each ladder step does, for a whole chunk of due calls at once.

`Steps` sorts a chunk's calls by the step they take; `Steps.run` then does each kind's
work with a few queries however many calls take it: the call-again sends
(`dispatcher.call_again`), the backups' calls and sends, the ladder notices for
supervisors and the next level up, and the regions' door-knock tasks (one per warning
and region, opened once for all its calls).
It reports what each call's audit row records, the sends to enqueue, and the new tasks
whose assignees are to be told (`hand_over`) once the calls point at them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.bulk import insert_rows, insert_skipping_existing, reserve_ids
from dispatcher.call_again import call_again
from dispatcher.config import LadderStep, Policy
from dispatcher.doorknock import OPEN_TASK_STATES, notify_assignee, open_silent_task
from dispatcher.fanout import CONTACT_KIND, assign_codes, first_addresses
from dispatcher.models import (
    Attempt,
    Base,
    Call,
    DoorKnockTask,
    Duty,
    LadderNotice,
    Region,
    Responder,
)
from dispatcher.vocabulary import AttemptPurpose, AttemptStatus, CallState

if TYPE_CHECKING:
    from dispatcher.ladder import DueCall
    from dispatcher.runtime import Runtime


ATTEMPTS, NOTICES = Base.metadata.tables["attempts"], Base.metadata.tables["ladder_notices"]


@dataclass
class Done:
    """What `Steps.run` did."""

    details: dict[int, dict[str, Any]] = field(default_factory=dict)  # call id -> audit detail
    attempt_ids: list[int] = field(default_factory=list)
    batch_ids: list[int] = field(default_factory=list)  # call-again sends left to workers
    task_of: dict[int, int] = field(default_factory=dict)  # call id -> its door-knock task
    new_tasks: list[DoorKnockTask] = field(default_factory=list)


@dataclass
class Steps:
    """A chunk's due calls, sorted by the kind of step each takes."""

    again: list[tuple[DueCall, LadderStep, int]] = field(default_factory=list)
    backup: list[tuple[DueCall, Policy]] = field(default_factory=list)
    supervisor: list[DueCall] = field(default_factory=list)
    up: list[tuple[DueCall, LadderStep]] = field(default_factory=list)
    door: list[tuple[DueCall, Policy]] = field(default_factory=list)

    def add(self, call: DueCall, policy: Policy, step: LadderStep, index: int) -> None:
        if step.step == "call_again":
            self.again.append((call, step, index))
        elif step.step == "call_backup":
            self.backup.append((call, policy))
        elif step.step == "notify_supervisor":
            self.supervisor.append(call)
        elif step.step == "notify_up":
            self.up.append((call, step))
        elif step.step == "door_knock":
            self.door.append((call, policy))

    async def run(self, session: AsyncSession, now: datetime) -> Done:
        done = Done()
        people = [call.responder_id for call, _ in self.backup]
        links = await _links(session, people + [call.responder_id for call in self.supervisor])
        again = await call_again(session, self.again, now)
        done.attempt_ids += again.attempt_ids
        done.batch_ids += again.batch_ids
        done.attempt_ids += await _call_backups(session, self.backup, links, now, done)
        notices: list[tuple[int, str, int]] = []
        for call in self.supervisor:
            supervisor = links[call.responder_id][1]
            done.details[call.id] = {"supervisor": supervisor}
            if supervisor is not None:
                notices.append((call.id, "supervisor", supervisor))
        told = await _up_recipients(session, self.up)
        for call, _ in self.up:
            recipients = told.get(call.id, [])
            done.details[call.id] = {"told": len(recipients)}
            notices += [(call.id, "up", recipient) for recipient in recipients]
        await _queue_notices(session, notices, now)
        await _open_tasks(session, self.door, now, done)
        return done


async def hand_over(
    runtime: Runtime, session: AsyncSession, task: DoorKnockTask, now: datetime
) -> list[Attempt]:
    """Tell a new task's assignee; the sends are enqueued when the chunk commits."""
    attempts = await notify_assignee(runtime, session, task, now)
    for attempt in attempts:
        attempt.enqueued_at = now
    await session.flush()
    return attempts


async def _links(session: AsyncSession, responder_ids: list[int]) -> dict[int, tuple[Any, Any]]:
    """responder id -> (backup id, supervisor id)."""
    if not responder_ids:
        return {}
    rows = await session.execute(
        select(Responder.id, Responder.backup_id, Responder.supervisor_id).where(
            Responder.id.in_(set(responder_ids))
        )
    )
    return {responder_id: (backup, supervisor) for responder_id, backup, supervisor in rows}


def _send_row(
    call_id: int,
    warning_id: int,
    responder_id: int,
    channel: str,
    address: str,
    now: datetime,
    try_number: int,
) -> dict[str, Any]:
    """A call's send, as `fanout.new_attempt` makes it, marked enqueued (see `apply_steps`)."""
    return {
        "warning_id": warning_id,
        "call_id": call_id,
        "responder_id": responder_id,
        "purpose": AttemptPurpose.CALL,
        "channel": channel,
        "address": address,
        "body": None,
        "status": AttemptStatus.QUEUED,
        "try_number": try_number,
        "due_at": now,
        "enqueued_at": now,
        "updated_at": now,
    }


async def _insert_sends(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """Write the sends (ids reserved first, then COPY on PostgreSQL); returns their ids."""
    if not rows:
        return []
    ids = await reserve_ids(session, ATTEMPTS, len(rows))
    columns = ["id", *rows[0]]
    await insert_rows(
        session,
        ATTEMPTS,
        columns,
        [[id_, *row.values()] for id_, row in zip(ids, rows, strict=True)],
    )
    return ids


async def _call_backups(
    session: AsyncSession,
    items: list[tuple[DueCall, Policy]],
    links: dict[int, tuple[Any, Any]],
    now: datetime,
    done: Done,
) -> list[int]:
    """Call each silent person's backup too (once per warning); their answer never stands
    for the silent person's. A backup's own call has no backup step."""
    wanted: list[tuple[DueCall, Policy, int]] = []
    for call, policy in items:
        backup = links[call.responder_id][0] if call.origin != "backup" else None
        done.details[call.id] = {"backup": backup}
        if backup is not None:
            wanted.append((call, policy, backup))
    if not wanted:
        return []
    existing = set(
        (
            await session.execute(
                select(Call.warning_id, Call.responder_id).where(
                    Call.warning_id.in_({call.warning_id for call, _, _ in wanted}),
                    Call.responder_id.in_({backup for _, _, backup in wanted}),
                )
            )
        ).all()
    )
    new: dict[tuple[int, int], tuple[DueCall, Policy]] = {}
    for call, policy, backup in wanted:
        key = (call.warning_id, backup)
        if key not in existing and key not in new:
            new[key] = (call, policy)
    if not new:
        return []
    # A sweep in another worker may be adding the same backup's call: the database keeps
    # one (the later insert waits for the earlier and skips it). Sorted keys: no deadlock.
    rows = [
        {
            "warning_id": warning_id,
            "responder_id": backup,
            "region_id": call.region_id,
            "origin": "backup",
            "backup_for_call_id": call.id,
            "state": CallState.PENDING,
            "escalation_step": 0,
            "started_at": now,
            "next_step_at": None,
        }
        for (warning_id, backup), (call, _) in sorted(new.items(), key=lambda item: item[0])
    ]
    inserted = await session.execute(
        insert_skipping_existing(session, Call, ["warning_id", "responder_id"]).returning(
            Call.id, Call.warning_id, Call.responder_id
        ),
        rows,
    )
    # Transient rows for `assign_codes`, which picks each a code free among the person's
    # calls of other live warnings.
    coded = [
        Call(id=call_id, warning_id=warning_id, responder_id=backup)
        for call_id, warning_id, backup in inserted
    ]
    if not coded:
        return []
    await assign_codes(session, coded)
    await session.execute(update(Call), [{"id": c.id, "code": c.code} for c in coded])
    contacts = await first_addresses(session, sorted({c.responder_id for c in coded}))
    sends = [
        _send_row(c.id, c.warning_id, c.responder_id, channel, address, now, 1)
        for c in coded
        for channel in new[(c.warning_id, c.responder_id)][1].channels
        if (address := contacts.get(c.responder_id, {}).get(CONTACT_KIND[channel]))
    ]
    return await _insert_sends(session, sends)


async def _up_recipients(
    session: AsyncSession, items: list[tuple[DueCall, LadderStep]]
) -> dict[int, list[int]]:
    """call id -> who to tell: the duty office (the step's roles, active) of the region
    at the step's level above the call's region, the silent person left out."""
    if not items:
        return {}
    paths = dict(
        (
            await session.execute(
                select(Region.id, Region.path).where(
                    Region.id.in_({call.region_id for call, _ in items})
                )
            )
        ).all()
    )
    codes_of = {
        rid: [code for code in path.strip("/").split("/") if code] for rid, path in paths.items()
    }
    every_code = {code for codes in codes_of.values() for code in codes}
    found: dict[int, list[int]] = {}
    kinds: dict[tuple[str, tuple[str, ...]], list[DueCall]] = defaultdict(list)
    for call, step in items:
        kinds[(step.level or "", tuple(step.notify_roles()))].append(call)
    for (level, roles), calls in kinds.items():
        ancestors = dict(
            (
                await session.execute(
                    select(Region.code, Region.id).where(
                        Region.code.in_(every_code), Region.level == level
                    )
                )
            ).all()
        )
        duty: dict[int, list[int]] = defaultdict(list)
        if ancestors:
            rows = await session.execute(
                select(Duty.region_id, Responder.id)
                .join(Duty, Duty.responder_id == Responder.id)
                .where(
                    Duty.region_id.in_(set(ancestors.values())),
                    Responder.role.in_(roles),
                    Responder.active.is_(True),
                )
                .order_by(Responder.id)
            )
            for region_id, responder_id in rows:
                duty[region_id].append(responder_id)
        for call in calls:
            above = next((ancestors[c] for c in codes_of[call.region_id] if c in ancestors), None)
            found[call.id] = [r for r in duty.get(above or 0, []) if r != call.responder_id]
    return found


async def _queue_notices(
    session: AsyncSession, wanted: list[tuple[int, str, int]], now: datetime
) -> None:
    """Queue (call, kind, recipient) notices for the digests, each at most once."""
    if not wanted:
        return
    rows = await session.execute(
        select(LadderNotice.call_id, LadderNotice.kind, LadderNotice.recipient_id).where(
            LadderNotice.call_id.in_({call_id for call_id, _, _ in wanted})
        )
    )
    seen = {(call_id, kind, recipient_id) for call_id, kind, recipient_id in rows}
    new = []
    for key in wanted:
        if key not in seen:
            seen.add(key)
            call_id, kind, recipient_id = key
            new.append(
                {
                    "call_id": call_id,
                    "kind": kind,
                    "recipient_id": recipient_id,
                    "created_at": now,
                    "sent_at": None,
                    "attempt_id": None,
                }
            )
    if new:
        await insert_rows(session, NOTICES, list(new[0]), [list(row.values()) for row in new])


async def _open_tasks(
    session: AsyncSession, items: list[tuple[DueCall, Policy]], now: datetime, done: Done
) -> None:
    """Point each call at its region's open task for the warning, opening one if need be."""
    groups: dict[tuple[int, int], list[DueCall]] = defaultdict(list)
    policies: dict[tuple[int, int], Policy] = {}
    for call, policy in items:
        groups[(call.warning_id, call.region_id)].append(call)
        policies[(call.warning_id, call.region_id)] = policy
    if not groups:
        return
    region_ids = {region_id for _, region_id in groups}
    existing: dict[tuple[int, int], DoorKnockTask] = {}
    for open_task in await session.scalars(
        select(DoorKnockTask)
        .where(
            DoorKnockTask.warning_id.in_({warning_id for warning_id, _ in groups}),
            DoorKnockTask.region_id.in_(region_ids),
            DoorKnockTask.reason == "silent",
            DoorKnockTask.status.in_(OPEN_TASK_STATES),
        )
        .order_by(DoorKnockTask.id)
    ):
        existing.setdefault((open_task.warning_id, open_task.region_id), open_task)
    regions = {
        r.id: r for r in await session.scalars(select(Region).where(Region.id.in_(region_ids)))
    }
    missing = sorted({region for warning, region in groups if (warning, region) not in existing})
    if missing:
        # Two sweeps opening a task for one region take turns: the second finds the
        # first's task (`open_silent_task` looks again) instead of opening another.
        await session.execute(
            select(Region.id).where(Region.id.in_(missing)).order_by(Region.id).with_for_update()
        )
    for key, calls in groups.items():
        found = existing.get(key)
        if found is not None:
            task = found
        else:
            first = calls[0]
            accept_within = timedelta(minutes=policies[key].task_accept_within_min)
            task, created = await open_silent_task(
                session,
                first.warning_id,
                regions[first.region_id],
                first.responder_id,
                now,
                accept_within,
            )
            if created:
                done.new_tasks.append(task)
        for call in calls:
            done.task_of[call.id] = task.id
            done.details[call.id] = {"task": task.id}
