"""Telling people up the line: one digest per person per sweep, and unaccepted tasks.

`send_digests` takes the `LadderNotice`s the ladder queued (notify_supervisor, notify_up),
drops those whose call was answered or whose warning is no longer active, and sends each
recipient one text listing everyone still silent under them, grouped by warning, rather
than one text per silent person. `escalate_tasks` tells the supervisors of a door-knock
task's silent responders when nobody accepted it in time. Both lock what they take
(`SKIP LOCKED` on PostgreSQL), so sweeps running in several workers never send twice.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.audit import record
from dispatcher.doorknock import silent_names, task_url
from dispatcher.fanout import sms_notice
from dispatcher.models import Call, DoorKnockTask, LadderNotice, Region, Responder, Warning
from dispatcher.vocabulary import OPEN_CALL_STATES, AttemptPurpose, CallState, TaskStatus

if TYPE_CHECKING:
    from dispatcher.runtime import Runtime

SILENT_STATES = (*OPEN_CALL_STATES, CallState.UNANSWERED)
NAMES_PER_WARNING = 30  # an SMS digest stays readable; the dashboard has the full list
DIGEST_RECIPIENTS = 200  # recipients per transaction
CALLS_PER_QUERY = 5000  # ids per IN list: the drivers take ~32,000 bound parameters


async def send_digests(runtime: Runtime) -> int:
    """Send the queued ladder notices, one text per recipient; returns texts queued.

    Works through the recipients in order, a chunk of `DIGEST_RECIPIENTS` per transaction,
    so each person's notices all go into the one digest whatever their number.
    """
    sent, after = 0, 0
    while True:
        now = runtime.clock.now()
        async with runtime.db.transaction() as session:
            recipients = list(
                await session.scalars(
                    select(LadderNotice.recipient_id)
                    .where(LadderNotice.sent_at.is_(None), LadderNotice.recipient_id > after)
                    .group_by(LadderNotice.recipient_id)
                    .order_by(LadderNotice.recipient_id)
                    .limit(DIGEST_RECIPIENTS)
                )
            )
            if not recipients:
                return sent
            pending = list(
                await session.scalars(
                    select(LadderNotice)
                    .where(
                        LadderNotice.sent_at.is_(None),
                        LadderNotice.recipient_id.in_(recipients),
                    )
                    .order_by(LadderNotice.id)
                    .with_for_update(skip_locked=True)
                )
            )
            sent += await _send(runtime, session, pending, now)
        if len(recipients) < DIGEST_RECIPIENTS:
            return sent
        after = recipients[-1]


async def _send(
    runtime: Runtime, session: AsyncSession, pending: list[LadderNotice], now: datetime
) -> int:
    """One digest per recipient of these (locked) notices; returns texts queued."""
    calls: dict[int, tuple[Call, Responder, Region, Warning]] = {}
    call_ids = sorted({n.call_id for n in pending})
    for start in range(0, len(call_ids), CALLS_PER_QUERY):
        rows = await session.execute(
            select(Call, Responder, Region, Warning)
            .join(Responder, Responder.id == Call.responder_id)
            .join(Region, Region.id == Call.region_id)
            .join(Warning, Warning.id == Call.warning_id)
            .where(Call.id.in_(call_ids[start : start + CALLS_PER_QUERY]))
        )
        for call, responder, region, warning in rows.all():
            calls[call.id] = (call, responder, region, warning)
    by_recipient: dict[int, list[LadderNotice]] = defaultdict(list)
    for notice in pending:
        notice.sent_at = now
        call, _, _, warning = calls[notice.call_id]
        if call.state in SILENT_STATES and warning.state == "active":
            by_recipient[notice.recipient_id].append(notice)
    for recipient_id, items in by_recipient.items():
        groups: dict[int, list[str]] = defaultdict(list)
        for notice in items:
            call, responder, region, warning = calls[notice.call_id]
            entry = f"{responder.name}（{region.name}）"
            if entry not in groups[warning.id]:
                groups[warning.id].append(entry)
        warnings = {calls[n.call_id][3].id: calls[n.call_id][3] for n in items}
        body = runtime.renderer.render(
            "supervisor_digest",
            total=sum(len(names) for names in groups.values()),
            earlier=await _still_silent_earlier(session, recipient_id, items),
            groups=[
                (warnings[wid], names[:NAMES_PER_WARNING], len(names))
                for wid, names in groups.items()
            ],
        )
        attempt = await sms_notice(
            session,
            to_responder_id=recipient_id,
            purpose=AttemptPurpose.NOTICE,
            body=body,
            warning_id=next(iter(groups)) if len(groups) == 1 else None,
            call=None,
            now=now,
        )
        if attempt is not None:
            await session.flush()
            for notice in items:
                notice.attempt_id = attempt.id
        record(
            session,
            now,
            "digest.sent",
            actor=f"responder:{recipient_id}",
            detail={"calls": [n.call_id for n in items], "sent": attempt is not None},
        )
    return len(by_recipient)


async def _still_silent_earlier(
    session: AsyncSession, recipient_id: int, items: list[LadderNotice]
) -> int:
    """People this recipient was told about before who are still silent."""
    told = await session.scalars(
        select(LadderNotice.call_id)
        .distinct()
        .join(Call, Call.id == LadderNotice.call_id)
        .join(Warning, Warning.id == Call.warning_id)
        .where(
            LadderNotice.recipient_id == recipient_id,
            LadderNotice.attempt_id.is_not(None),
            Call.state.in_(SILENT_STATES),
            Warning.state == "active",
        )
    )
    # Set apart in Python: a digest may list more calls than a statement takes parameters.
    return len(set(told) - {n.call_id for n in items})


async def escalate_tasks(runtime: Runtime) -> int:
    """Tasks nobody accepted in time (or could be given to): tell the supervisors, once."""
    size, escalated = min(runtime.settings.worker.sweep_batch, CALLS_PER_QUERY), 0
    while True:
        done = await _escalate_some(runtime, size)
        escalated += done
        if done < size:
            return escalated


async def _escalate_some(runtime: Runtime, size: int) -> int:
    now = runtime.clock.now()
    settings = runtime.settings
    async with runtime.db.transaction() as session:
        tasks = list(
            await session.scalars(
                select(DoorKnockTask)
                .join(Warning, Warning.id == DoorKnockTask.warning_id)
                .where(
                    DoorKnockTask.status == TaskStatus.OPEN,
                    DoorKnockTask.escalate_at <= now,
                    DoorKnockTask.escalated_at.is_(None),
                    Warning.state == "active",
                )
                .order_by(DoorKnockTask.escalate_at)
                .limit(size)
                .with_for_update(skip_locked=True, of=DoorKnockTask)
            )
        )
        for task in tasks:
            task.escalated_at = now
            supervisors = await _task_supervisors(session, task)
            region = await session.get(Region, task.region_id)
            warning = await session.get(Warning, task.warning_id)
            assignee = await session.get(Responder, task.assignee_id) if task.assignee_id else None
            minutes = int((now - task.created_at).total_seconds() // 60)
            body = runtime.renderer.render(
                "task_escalation",
                region=region,
                warning=warning,
                assignee=assignee,
                minutes=minutes,
                names="、".join(await silent_names(session, task.id)),
                task_url=task_url(settings.app.secret_key, settings.app.public_base_url, task.id),
            )
            for supervisor_id in supervisors:
                await sms_notice(
                    session,
                    to_responder_id=supervisor_id,
                    purpose=AttemptPurpose.NOTICE,
                    body=body,
                    warning_id=task.warning_id,
                    call=None,
                    now=now,
                )
            record(
                session,
                now,
                "task.escalated",
                warning_id=task.warning_id,
                detail={"task": task.id, "supervisors": supervisors},
            )
        return len(tasks)


async def _task_supervisors(session: AsyncSession, task: DoorKnockTask) -> list[int]:
    """Supervisors of the task's silent responders, else of its assignee."""
    found = set(
        await session.scalars(
            select(Responder.supervisor_id)
            .join(Call, Call.responder_id == Responder.id)
            .where(Call.door_knock_task_id == task.id, Responder.supervisor_id.is_not(None))
        )
    )
    if not found and task.assignee_id is not None:
        assignee = await session.get(Responder, task.assignee_id)
        if assignee is not None and assignee.supervisor_id is not None:
            found.add(assignee.supervisor_id)
    return sorted(s for s in found if s is not None and s != task.assignee_id)
