"""Door-knock tasks and broadcasts as rows for the pages, in the reader's scope."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.access import Access, speaker_condition
from dispatcher.models import Broadcast, DoorKnockTask, Region, Responder, Speaker, Warning

BOARD_COLUMNS = ("open", "accepted", "done", "unreachable")


async def task_rows(
    session: AsyncSession,
    access: Access,
    *,
    warning_id: int | None = None,
    statuses: tuple[str, ...] | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Tasks (newest first) with their region, warning and assignee."""
    query = (
        select(DoorKnockTask, Region, Warning, Responder)
        .join(Region, Region.id == DoorKnockTask.region_id)
        .join(Warning, Warning.id == DoorKnockTask.warning_id)
        .outerjoin(Responder, Responder.id == DoorKnockTask.assignee_id)
        .where(access.regions())
        .order_by(DoorKnockTask.id.desc())
        .limit(limit)
    )
    if warning_id is not None:
        query = query.where(DoorKnockTask.warning_id == warning_id)
    if statuses is not None:
        query = query.where(DoorKnockTask.status.in_(statuses))
    return [
        {
            "task": task,
            "region": region,
            "warning": warning,
            "assignee": assignee,
            # since when it is in its current status
            "since": task.finished_at or task.accepted_at or task.created_at,
        }
        for task, region, warning, assignee in (await session.execute(query)).all()
    ]


async def task_board(session: AsyncSession, access: Access) -> dict[str, list[dict[str, Any]]]:
    """Tasks of active warnings, and every task still open, by status column."""
    rows = await task_rows(session, access, statuses=BOARD_COLUMNS, limit=2000)
    board: dict[str, list[dict[str, Any]]] = {status: [] for status in BOARD_COLUMNS}
    for row in rows:
        finished = row["task"].status in ("done", "unreachable")
        if finished and row["warning"].state != "active":
            continue
        board[row["task"].status].append(row)
    return board


async def broadcast_rows(
    session: AsyncSession, warning_id: int, access: Access
) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(Broadcast, Speaker, Region)
        .join(Speaker, Speaker.id == Broadcast.speaker_id)
        .join(Region, Region.id == Speaker.region_id)
        .where(Broadcast.warning_id == warning_id, speaker_condition(access))
        .order_by(Region.path, Speaker.name)
    )
    return [{"broadcast": b, "speaker": s, "region": r} for b, s, r in rows.all()]
