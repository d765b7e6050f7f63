"""The read side: a warning's figures, its calls with their answer history, the region tree.

The figures and the tree are summed from the counters the database keeps
(`dispatcher.counters`), not counted over the calls on every read.

Statuses are the latest of each call (`Call.answer_meaning`); evacuated counts are each
call's latest `4 N`, added up over the region tree (a township's figure includes its
villages and grids). Every function takes the reader's `Access` and counts only the rows
in its region scope (none given: everything).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.access import Access, region_condition, speaker_condition
from dispatcher.bulk import id_in
from dispatcher.counters import call_counts, region_counts
from dispatcher.models import (
    Answer,
    Attempt,
    Broadcast,
    Call,
    DoorKnockTask,
    Region,
    Responder,
    Warning,
)
from dispatcher.phones import mask_phone
from dispatcher.vocabulary import CallState, Meaning, TaskStatus, status_label

EVERYTHING = Access(user_id=0, username="system", role="admin")


async def _count_by(
    session: AsyncSession, key: Any, warning_column: Any, warning_id: int, scope: Any
) -> dict[str, int]:
    """{value of key: rows} for one warning's rows in scope."""
    rows = await session.execute(
        select(key, func.count()).where(warning_column == warning_id, scope).group_by(key)
    )
    return {value: count for value, count in rows.all()}


async def warning_summary(
    session: AsyncSession, warning: Warning, access: Access = EVERYTHING
) -> dict[str, Any]:
    states: dict[str, int] = defaultdict(int)
    statuses: dict[str, int] = defaultdict(int)
    evacuated = 0
    for state, meaning, count, people in await call_counts(session, warning.id, access):
        states[state] += count
        if meaning is not None:
            statuses[str(meaning)] += count
        evacuated += people
    total = sum(states.values())
    answered = states.get(CallState.ANSWERED, 0)
    help_count = statuses.get(Meaning.HELP, 0)
    broadcasts = await _count_by(
        session, Broadcast.status, Broadcast.warning_id, warning.id, speaker_condition(access)
    )
    tasks = await _count_by(
        session,
        DoorKnockTask.status,
        DoorKnockTask.warning_id,
        warning.id,
        region_condition(DoorKnockTask.region_id, access),
    )
    return {
        "calls": {
            "total": total,
            "answered": answered,
            "pending": states.get(CallState.PENDING, 0) + states.get(CallState.CALLING, 0),
            "escalated": states.get(CallState.ESCALATED, 0),
            "unanswered": states.get(CallState.UNANSWERED, 0),
            "cancelled": states.get(CallState.CANCELLED, 0),
            "expired": states.get(CallState.EXPIRED, 0),
            "superseded": states.get(CallState.SUPERSEDED, 0),
            "help": help_count or 0,
        },
        "statuses": dict(statuses),
        "evacuated": int(evacuated or 0),
        "answer_rate": round(answered / total, 4) if total else None,
        "broadcasts": {"total": sum(broadcasts.values()), **broadcasts},
        "door_knock_tasks": {
            "open": tasks.get(TaskStatus.OPEN, 0) + tasks.get(TaskStatus.ACCEPTED, 0),
            "done": tasks.get(TaskStatus.DONE, 0),
            "unreachable": tasks.get(TaskStatus.UNREACHABLE, 0),
            "cancelled": tasks.get(TaskStatus.CANCELLED, 0),
        },
    }


async def totals(session: AsyncSession, *, drill: bool) -> dict[str, Any]:
    """Figures over all real warnings, or over all drills: the two are never mixed."""
    of_kind = Warning.is_drill.is_(drill)
    warnings = await session.scalar(select(func.count()).select_from(Warning).where(of_kind))
    calls = dict(
        (
            await session.execute(
                select(Call.state, func.count())
                .join(Warning, Warning.id == Call.warning_id)
                .where(of_kind)
                .group_by(Call.state)
            )
        ).all()
    )
    answers = await session.scalar(
        select(func.count())
        .select_from(Answer)
        .join(Call, Call.id == Answer.call_id)
        .join(Warning, Warning.id == Call.warning_id)
        .where(of_kind)
    )
    tasks = dict(
        (
            await session.execute(
                select(DoorKnockTask.status, func.count())
                .join(Warning, Warning.id == DoorKnockTask.warning_id)
                .where(of_kind)
                .group_by(DoorKnockTask.status)
            )
        ).all()
    )
    return {
        "drill": drill,
        "warnings": warnings or 0,
        "calls": {"total": sum(calls.values()), **calls},
        "answers": answers or 0,
        "door_knock_tasks": {"total": sum(tasks.values()), **tasks},
    }


def warning_public(warning: Warning) -> dict[str, Any]:
    return {
        "id": warning.id,
        "sender": warning.sender,
        "identifier": warning.identifier,
        "status": warning.status,
        "msg_type": warning.msg_type,
        "drill": warning.is_drill,
        "state": warning.state,
        "signal": warning.signal,
        "supersedes": warning.supersedes_id,
        "event": warning.event,
        "level": warning.level,
        "headline": warning.headline,
        "sent": warning.sent.isoformat(),
        "received_at": warning.received_at.isoformat(),
        "expires": warning.expires.isoformat() if warning.expires else None,
        "notes": warning.notes,
    }


async def region_tree(
    session: AsyncSession,
    warning_id: int,
    access: Access = EVERYTHING,
    *,
    depth: int | None = None,
) -> list[dict[str, Any]]:
    """Per region with calls under it: calls, answered, help and evacuated, over the subtree.

    A scoped reader gets their own region and what lies below it, never its ancestors.
    With `depth`, only the regions that deep in the tree (0: the roots), as one level of
    the warning page needs: a few rows rather than the thousands of a county.
    """
    regions = Region.__table__.c
    # A region's figures are its own calls' plus those of every region below it.
    totals: dict[str, list[int]] = {}
    for path, count, answered, help_, evacuated in await region_counts(session, warning_id, access):
        codes = path.strip("/").split("/")
        for code in codes if depth is None else codes[depth : depth + 1]:
            if code:
                total = totals.setdefault(code, [0, 0, 0, 0])
                total[0] += count
                total[1] += answered
                total[2] += help_
                total[3] += evacuated
    found = await session.execute(
        select(
            regions.id,
            regions.code,
            regions.name,
            regions.level,
            regions.depth,
            regions.path,
            regions.parent_id,
        )
        .where(id_in(session, regions.code, list(totals)), access.regions())
        .order_by(regions.path)
    )
    tree = []
    for id_, code, name, level, depth, path, parent_id in found.all():
        count, answered, help_, evacuated = totals[code]
        tree.append(
            {
                "id": id_,
                "code": code,
                "name": name,
                "level": level,
                "depth": depth,
                "path": path,
                "parent_id": parent_id,
                "calls": count,
                "answered": answered,
                "help": help_,
                "evacuated": evacuated,
            }
        )
    return tree


async def answer_history(session: AsyncSession, call_ids: list[int]) -> dict[int, list[Any]]:
    """call id -> its answers, oldest first, each as a dict (manual ones marked)."""
    history: dict[int, list[Any]] = {}
    if not call_ids:
        return history
    for answer in await session.scalars(
        select(Answer).where(Answer.call_id.in_(call_ids)).order_by(Answer.at, Answer.id)
    ):
        history.setdefault(answer.call_id, []).append(
            {
                "at": answer.at.isoformat(),
                "status": answer.meaning,
                "label": status_label(answer.meaning, answer.people),
                "people": answer.people,
                "channel": answer.channel,
                "raw": answer.raw,
                "manual": answer.recorded_by is not None,
                "recorded_by": answer.recorded_by,
                "method": answer.method,
            }
        )
    return history


async def list_calls(
    session: AsyncSession, warning_id: int, access: Access = EVERYTHING
) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(Call, Responder, Region)
            .join(Responder, Responder.id == Call.responder_id)
            .join(Region, Region.id == Call.region_id)
            .where(Call.warning_id == warning_id, access.regions())
            .order_by(Call.id)
        )
    ).all()
    attempts: dict[int, list[dict[str, Any]]] = {}
    in_scope = select(Call.id).where(
        Call.warning_id == warning_id, region_condition(Call.region_id, access)
    )
    for a in await session.scalars(
        select(Attempt)
        .where(Attempt.warning_id == warning_id, Attempt.call_id.in_(in_scope))
        .order_by(Attempt.id)
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
    history = await answer_history(session, [call.id for call, _, _ in rows])
    return [
        {
            "id": call.id,
            "code": call.code,
            "responder": {"id": r.external_id, "name": r.name, "role": r.role},
            "region": {"code": region.code, "name": region.name},
            "origin": call.origin,
            "state": call.state,
            "escalation_step": call.escalation_step,
            "answer": call.answer_meaning,
            "status": status_label(call.answer_meaning, call.evacuated),
            "evacuated": call.evacuated,
            "delivered_at": call.delivered_at.isoformat() if call.delivered_at else None,
            "answers": history.get(call.id, []),
            "answered_at": call.answered_at.isoformat() if call.answered_at else None,
            "next_step_at": call.next_step_at.isoformat() if call.next_step_at else None,
            "door_knock_task_id": call.door_knock_task_id,
            "attempts": attempts.get(call.id, []),
        }
        for call, r, region in rows
    ]
