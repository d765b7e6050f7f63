"""The read side: a warning's figures, its calls, and the silent ones."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.models import Attempt, Broadcast, Call, DoorKnockTask, Region, Responder, Warning
from dispatcher.phones import mask_phone
from dispatcher.vocabulary import CallState, TaskStatus


async def _count_by(
    session: AsyncSession, key: Any, warning_column: Any, warning_id: int
) -> dict[str, int]:
    """{value of key: rows} for one warning's rows."""
    rows = await session.execute(
        select(key, func.count()).where(warning_column == warning_id).group_by(key)
    )
    return {value: count for value, count in rows.all()}


async def warning_summary(session: AsyncSession, warning: Warning) -> dict[str, Any]:
    states = await _count_by(session, Call.state, Call.warning_id, warning.id)
    total = sum(states.values())
    answered = states.get(CallState.ANSWERED, 0)
    help_count = await session.scalar(
        select(func.count())
        .select_from(Call)
        .where(Call.warning_id == warning.id, Call.answer_meaning == "help")
    )
    broadcasts = await _count_by(session, Broadcast.status, Broadcast.warning_id, warning.id)
    tasks = await _count_by(session, DoorKnockTask.status, DoorKnockTask.warning_id, warning.id)
    return {
        "calls": {
            "total": total,
            "answered": answered,
            "pending": states.get(CallState.PENDING, 0) + states.get(CallState.CALLING, 0),
            "escalated": states.get(CallState.ESCALATED, 0),
            "unanswered": states.get(CallState.UNANSWERED, 0),
            "cancelled": states.get(CallState.CANCELLED, 0),
            "help": help_count or 0,
        },
        "answer_rate": round(answered / total, 4) if total else None,
        "broadcasts": {"total": sum(broadcasts.values()), **broadcasts},
        "door_knock_tasks": {
            "open": tasks.get(TaskStatus.OPEN, 0) + tasks.get(TaskStatus.ACCEPTED, 0),
            "done": tasks.get(TaskStatus.DONE, 0),
            "unreachable": tasks.get(TaskStatus.UNREACHABLE, 0),
        },
    }


def warning_public(warning: Warning) -> dict[str, Any]:
    return {
        "id": warning.id,
        "sender": warning.sender,
        "identifier": warning.identifier,
        "status": warning.status,
        "msg_type": warning.msg_type,
        "state": warning.state,
        "event": warning.event,
        "level": warning.level,
        "headline": warning.headline,
        "sent": warning.sent.isoformat(),
        "received_at": warning.received_at.isoformat(),
        "expires": warning.expires.isoformat() if warning.expires else None,
        "notes": warning.notes,
    }


async def list_calls(session: AsyncSession, warning_id: int) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(Call, Responder, Region)
            .join(Responder, Responder.id == Call.responder_id)
            .join(Region, Region.id == Call.region_id)
            .where(Call.warning_id == warning_id)
            .order_by(Call.id)
        )
    ).all()
    attempts: dict[int, list[dict[str, Any]]] = {}
    for a in await session.scalars(
        select(Attempt).where(Attempt.warning_id == warning_id).order_by(Attempt.id)
    ):
        if a.call_id is None:
            continue
        attempts.setdefault(a.call_id, []).append(
            {
                "id": a.id,
                "purpose": a.purpose,
                "channel": a.channel,
                "provider": a.provider,
                "address": mask_phone(a.address) if a.address.startswith("+") else a.address,
                "status": a.status,
                "error_code": a.error_code,
                "sent_at": a.sent_at.isoformat() if a.sent_at else None,
            }
        )
    return [
        {
            "id": call.id,
            "responder": {"id": r.external_id, "name": r.name, "role": r.role},
            "region": {"code": region.code, "name": region.name},
            "origin": call.origin,
            "state": call.state,
            "escalation_step": call.escalation_step,
            "answer": call.answer_meaning,
            "answered_at": call.answered_at.isoformat() if call.answered_at else None,
            "next_step_at": call.next_step_at.isoformat() if call.next_step_at else None,
            "door_knock_task_id": call.door_knock_task_id,
            "attempts": attempts.get(call.id, []),
        }
        for call, r, region in rows
    ]
