"""Working a door-knock task: accept it, mark each household, add a note, finish it.

The task page (`/t/<token>`, no login) and an SMS `完成 K7` both come here. A finished
task (done or could not reach) stays on record; a late answer from a silent responder
never closes a task by itself: the people on the ground or the supervisor do.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.audit import record
from dispatcher.doorknock import OPEN_TASK_STATES
from dispatcher.models import DoorKnockTask, Household, Region, TaskHousehold, Warning
from dispatcher.vocabulary import HouseholdMark, TaskStatus

TASK_ACTIONS = (TaskStatus.ACCEPTED, TaskStatus.DONE, TaskStatus.UNREACHABLE)


class TaskRefused(Exception):
    """The change cannot be made; the message says why, in Chinese for the page."""


async def change_status(
    session: AsyncSession,
    task: DoorKnockTask,
    *,
    status: str,
    now: datetime,
    actor: str,
    notes: str | None = None,
) -> None:
    if status not in TASK_ACTIONS:
        raise TaskRefused("无效的状态，请使用页面上的按钮。")
    if task.status not in OPEN_TASK_STATES:
        raise TaskRefused("该任务已结束，无需再处理。")
    task.status, task.updated_at = status, now
    if status == TaskStatus.ACCEPTED:
        task.accepted_at = task.accepted_at or now
    else:
        task.finished_at = now
    if notes is not None:
        task.notes = notes[:1000]
    record(
        session,
        now,
        "task.updated",
        warning_id=task.warning_id,
        actor=actor,
        detail={"task": task.id, "status": status},
    )


async def mark_household(
    session: AsyncSession,
    task: DoorKnockTask,
    *,
    household_id: int,
    mark: str,
    now: datetime,
    actor: str,
) -> None:
    if mark not in set(HouseholdMark):
        raise TaskRefused("无效的入户结果。")
    if task.status not in OPEN_TASK_STATES:
        raise TaskRefused("该任务已结束，无需再处理。")
    region = await session.get(Region, task.region_id)
    household = await session.get(Household, household_id)
    if household is None or region is None:
        raise TaskRefused("该住户不在本任务中。")
    household_region = await session.get(Region, household.region_id)
    if household_region is None or not household_region.path.startswith(region.path):
        raise TaskRefused("该住户不在本任务中。")
    row = await session.scalar(
        select(TaskHousehold).where(
            TaskHousehold.task_id == task.id, TaskHousehold.household_id == household_id
        )
    )
    if row is None:
        session.add(TaskHousehold(task_id=task.id, household_id=household_id, mark=mark, at=now))
    else:
        row.mark, row.at = mark, now
    if task.status == TaskStatus.OPEN:  # marking a door is taking the task on
        task.status, task.accepted_at = TaskStatus.ACCEPTED, now
    task.updated_at = now
    record(
        session,
        now,
        "task.household",
        warning_id=task.warning_id,
        actor=actor,
        detail={"task": task.id, "household": household.external_id, "mark": mark},
    )


async def open_tasks_of(session: AsyncSession, responder_ids: list[int]) -> list[DoorKnockTask]:
    """Tasks these people may still finish, of warnings still active."""
    if not responder_ids:
        return []
    return list(
        await session.scalars(
            select(DoorKnockTask)
            .join(Warning, Warning.id == DoorKnockTask.warning_id)
            .where(
                DoorKnockTask.assignee_id.in_(responder_ids),
                DoorKnockTask.status.in_(OPEN_TASK_STATES),
                Warning.state == "active",
            )
            .order_by(DoorKnockTask.id)
            .with_for_update(of=DoorKnockTask)
        )
    )
