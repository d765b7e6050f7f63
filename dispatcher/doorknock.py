"""Door-knock tasks (敲门入户): work on the ground where calls or speakers stayed silent.

One open task per (warning, region, reason); silent calls of that region join it. The
assignee is the nearest responder up the region tree who did answer this warning: first
in the same region, then the parent's subtree, and so on up to the county.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.audit import record
from dispatcher.fanout import sms_notice
from dispatcher.models import (
    Attempt,
    Broadcast,
    Call,
    DoorKnockTask,
    Region,
    Responder,
    Speaker,
    Warning,
)
from dispatcher.security import make_link_token

if TYPE_CHECKING:
    from dispatcher.runtime import Runtime
from dispatcher.vocabulary import AttemptPurpose, CallState, TaskStatus


async def nearest_answered(
    session: AsyncSession, warning_id: int, region: Region, exclude: set[int]
) -> int | None:
    codes = [c for c in region.path.strip("/").split("/") if c]
    for code in reversed(codes):
        prefix = region.path[: region.path.index("/" + code + "/") + len(code) + 2]
        row = await session.execute(
            select(Call.responder_id)
            .join(Region, Region.id == Call.region_id)
            .where(
                Call.warning_id == warning_id,
                Call.state == CallState.ANSWERED,
                Call.answer_meaning == "received",
                Region.path.startswith(prefix),
                Call.responder_id.not_in(exclude or {0}),
            )
            .order_by(func.length(Region.path).desc(), Call.answered_at)
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
) -> tuple[DoorKnockTask, bool]:
    task = await session.scalar(
        select(DoorKnockTask).where(
            DoorKnockTask.warning_id == warning_id,
            DoorKnockTask.region_id == region.id,
            DoorKnockTask.reason == reason,
            DoorKnockTask.status.in_([TaskStatus.OPEN, TaskStatus.ACCEPTED]),
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
    )
    session.add(task)
    await session.flush()
    record(
        session,
        now,
        "task.opened",
        warning_id=warning_id,
        detail={"task": task.id, "region": region.code, "reason": reason, "assignee": assignee},
    )
    return task, True


async def _notify_assignee(
    runtime: Runtime,
    session: AsyncSession,
    task: DoorKnockTask,
    region: Region,
    names: str,
    warning: Warning | None,
    now: datetime,
) -> Attempt | None:
    if task.assignee_id is None:
        return None
    settings = runtime.settings
    body = runtime.renderer.render(
        "door_knock",
        region=region,
        names=names,
        warning=warning,
        task_url=task_url(settings.app.secret_key, settings.app.public_base_url, task.id),
    )
    return await sms_notice(
        session,
        to_responder_id=task.assignee_id,
        purpose=AttemptPurpose.TASK,
        body=body,
        warning_id=task.warning_id,
        call=None,
        now=now,
    )


async def open_silent_task(
    runtime,
    session: AsyncSession,
    call: Call,
    warning,  # type: ignore[no-untyped-def]
    now: datetime,
) -> Attempt | None:
    region = await session.get(Region, call.region_id)
    responder = await session.get(Responder, call.responder_id)
    assert region is not None and responder is not None
    task, created = await _open_task(
        session, call.warning_id, region, "silent", {call.responder_id}, now
    )
    call.door_knock_task_id = task.id
    if not created:
        return None
    return await _notify_assignee(runtime, session, task, region, responder.name, warning, now)


async def open_speaker_task(
    runtime,
    session: AsyncSession,
    broadcast: Broadcast,  # type: ignore[no-untyped-def]
    now: datetime,
) -> Attempt | None:
    """A speaker that failed: someone must go round with a gong (鸣锣吹哨)."""
    speaker = await session.get(Speaker, broadcast.speaker_id)
    assert speaker is not None
    region = await session.get(Region, speaker.region_id)
    warning = await session.get(Warning, broadcast.warning_id)
    assert region is not None
    task, created = await _open_task(
        session, broadcast.warning_id, region, "speaker_failed", set(), now
    )
    if not created:
        return None
    return await _notify_assignee(
        runtime, session, task, region, f"{speaker.name}（广播故障）", warning, now
    )
