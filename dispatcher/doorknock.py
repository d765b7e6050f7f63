"""Door-knock tasks (敲门入户): work on the ground where calls or speakers stayed silent.

One open task per (warning, region, reason): every silent call of a grid or village joins
its region's one task, with the households the directory lists there. The assignee is the
nearest responder who did answer this warning (and did not ask for help): first in the
same region, then up the tree as far as the township; never the county. The assignee is
told by SMS and WeCom with the signed task link and the task's short code (`完成 K7`).
A task with nobody to assign, or not accepted in time, goes to the supervisor
(`dispatcher.digests.escalate_tasks`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.audit import record
from dispatcher.codes import pick_code
from dispatcher.fanout import notices
from dispatcher.models import (
    Attempt,
    Broadcast,
    Call,
    DoorKnockTask,
    Household,
    Region,
    Responder,
    Speaker,
    Warning,
)
from dispatcher.security import make_link_token
from dispatcher.vocabulary import AttemptPurpose, CallState, Meaning, TaskStatus

if TYPE_CHECKING:
    from dispatcher.runtime import Runtime

OPEN_TASK_STATES = (TaskStatus.OPEN, TaskStatus.ACCEPTED)


async def nearest_answered(
    session: AsyncSession, warning_id: int, region: Region, exclude: set[int]
) -> int | None:
    """Who answered this warning nearest to `region`: same region, then up to the township."""
    codes = [c for c in region.path.strip("/").split("/") if c]
    levels = dict(
        (
            await session.execute(select(Region.code, Region.level).where(Region.code.in_(codes)))
        ).all()
    )
    for depth in range(len(codes), 0, -1):
        if levels.get(codes[depth - 1]) == "county":
            break
        prefix = "/" + "/".join(codes[:depth]) + "/"
        row = await session.execute(
            select(Call.responder_id)
            .join(Region, Region.id == Call.region_id)
            .where(
                Call.warning_id == warning_id,
                Call.state == CallState.ANSWERED,
                Call.answer_meaning != Meaning.HELP,
                Region.path.startswith(prefix),
                Call.responder_id.not_in(exclude or {0}),
            )
            .order_by(func.length(Region.path).desc(), Call.answered_at, Call.id)
            .limit(1)
        )
        found = row.scalar()
        if found is not None:
            return int(found)
    return None


def task_url(secret: str, base_url: str, task_id: int) -> str:
    return f"{base_url.rstrip('/')}/t/{make_link_token(secret, 't', task_id)}"


async def _open_task(
    session: AsyncSession,
    warning_id: int,
    region: Region,
    reason: str,
    exclude: set[int],
    now: datetime,
    accept_within: timedelta,
) -> tuple[DoorKnockTask, bool]:
    task = await session.scalar(
        select(DoorKnockTask).where(
            DoorKnockTask.warning_id == warning_id,
            DoorKnockTask.region_id == region.id,
            DoorKnockTask.reason == reason,
            DoorKnockTask.status.in_(OPEN_TASK_STATES),
        )
    )
    if task is not None:
        return task, False
    assignee = await nearest_answered(session, warning_id, region, exclude)
    task = DoorKnockTask(
        warning_id=warning_id,
        region_id=region.id,
        reason=reason,
        assignee_id=assignee,
        status=TaskStatus.OPEN,
        notes="",
        created_at=now,
        updated_at=now,
        # Nobody to hand it to: the supervisor hears of it at once.
        escalate_at=now + accept_within if assignee is not None else now,
    )
    session.add(task)
    await session.flush()
    taken = await session.scalars(
        select(DoorKnockTask.code).where(
            DoorKnockTask.assignee_id == assignee,
            DoorKnockTask.status.in_(OPEN_TASK_STATES),
            DoorKnockTask.id != task.id,
        )
    )
    task.code = pick_code(task.id, list(taken))
    record(
        session,
        now,
        "task.opened",
        warning_id=warning_id,
        detail={"task": task.id, "region": region.code, "reason": reason, "assignee": assignee},
    )
    return task, True


async def silent_names(session: AsyncSession, task_id: int) -> list[str]:
    return list(
        await session.scalars(
            select(Responder.name)
            .join(Call, Call.responder_id == Responder.id)
            .where(Call.door_knock_task_id == task_id)
            .order_by(Call.id)
        )
    )


async def households_in(session: AsyncSession, region: Region) -> list[Household]:
    """The households of a region and of every region under it."""
    return list(
        await session.scalars(
            select(Household)
            .join(Region, Region.id == Household.region_id)
            .where(Region.path.startswith(region.path))
            .order_by(Region.path, Household.external_id)
        )
    )


async def notify_assignee(
    runtime: Runtime, session: AsyncSession, task: DoorKnockTask, now: datetime, names: str = ""
) -> list[Attempt]:
    if task.assignee_id is None:
        return []
    settings = runtime.settings
    region = await session.get(Region, task.region_id)
    warning = await session.get(Warning, task.warning_id)
    assert region is not None
    households = await households_in(session, region)
    body = runtime.renderer.render(
        "door_knock",
        region=region,
        names=names or "、".join(await silent_names(session, task.id)),
        warning=warning,
        households=len(households),
        vulnerable=sum(1 for h in households if h.flags),
        code=task.code,
        task_url=task_url(settings.app.secret_key, settings.app.public_base_url, task.id),
    )
    return await notices(
        session,
        to_responder_id=task.assignee_id,
        purpose=AttemptPurpose.TASK,
        body=body,
        warning_id=task.warning_id,
        now=now,
    )


async def open_silent_task(
    session: AsyncSession,
    warning_id: int,
    region: Region,
    silent_responder_id: int,
    now: datetime,
    accept_within: timedelta,
) -> tuple[DoorKnockTask, bool]:
    """The region's task for the warning's silent calls, opened if need be; the caller
    points the calls at it and tells a new task's assignee."""
    return await _open_task(
        session, warning_id, region, "silent", {silent_responder_id}, now, accept_within
    )


async def open_speaker_task(
    runtime: Runtime,
    session: AsyncSession,
    broadcast: Broadcast,
    now: datetime,
) -> list[Attempt]:
    """A speaker that failed: someone must go round with a gong (鸣锣吹哨)."""
    speaker = await session.get(Speaker, broadcast.speaker_id)
    assert speaker is not None
    region = await session.get(Region, speaker.region_id)
    warning = await session.get(Warning, broadcast.warning_id)
    assert region is not None and warning is not None
    if warning.state != "active":
        return []
    policy = runtime.settings.policy_for(warning.level)
    task, created = await _open_task(
        session,
        broadcast.warning_id,
        region,
        "speaker_failed",
        set(),
        now,
        timedelta(minutes=policy.task_accept_within_min),
    )
    if not created:
        return []
    return await notify_assignee(runtime, session, task, now, names=f"{speaker.name}（广播故障）")
