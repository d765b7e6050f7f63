"""What the live page needs: a cheap fingerprint of a warning's state and a fresh snapshot.

The server-sent-events route polls `fingerprint` (one small query) every half second and
sends a `snapshot` when it changes. Reading the database rather than a message bus means an
answer recorded by any process (a worker, another API process, a CLI) shows up, with the
embedded default and with servers alike, and nothing can be missed between two polls.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.access import Access, region_condition
from dispatcher.figures import answer_curve, since_label
from dispatcher.models import Answer, Attempt, Call, DoorKnockTask, Region, Responder, Warning
from dispatcher.summary import region_tree, warning_summary
from dispatcher.svg import answer_curve_svg
from dispatcher.vocabulary import status_label

LATEST_ANSWERS = 10


async def fingerprint(session: AsyncSession, warning_ids: list[int]) -> tuple[Any, ...]:
    """Changes whenever an answer, a call's state, an attempt or a task of these changes."""
    answers = (
        await session.execute(
            select(func.count(Answer.id), func.max(Answer.id))
            .join(Call, Call.id == Answer.call_id)
            .where(Call.warning_id.in_(warning_ids))
        )
    ).one()
    calls = (
        await session.execute(
            select(
                func.count(Call.id), func.max(Call.status_at), func.sum(Call.escalation_step)
            ).where(Call.warning_id.in_(warning_ids))
        )
    ).one()
    attempts = await session.scalar(
        select(func.max(Attempt.updated_at)).where(Attempt.warning_id.in_(warning_ids))
    )
    tasks = await session.scalar(
        select(func.max(DoorKnockTask.updated_at)).where(DoorKnockTask.warning_id.in_(warning_ids))
    )
    states = await session.scalar(
        select(func.max(Warning.state)).where(Warning.id.in_(warning_ids))
    )
    return (*answers, *calls, attempts, tasks, states)


async def snapshot(
    session: AsyncSession, warnings: list[Warning], access: Access, now: datetime
) -> dict[str, Any]:
    """Per warning its figures in the reader's scope; for one warning also its latest
    answers, its time-to-answer curve redrawn (SVG markup) and each region's figures."""
    items = []
    for warning in warnings:
        summary = await warning_summary(session, warning, access)
        calls = summary["calls"]
        silent = calls["pending"] + calls["escalated"] + calls["unanswered"]
        items.append(
            {
                "id": warning.id,
                "state": warning.state,
                "rate": summary["answer_rate"],
                "answered": calls["answered"],
                "total": calls["total"],
                "silent": silent,
                "help": calls["help"],
                "evacuated": summary["evacuated"],
                "open_tasks": summary["door_knock_tasks"]["open"],
                "since": since_label(warning.received_at, now),
            }
        )
    latest: list[dict[str, Any]] = []
    curve = ""
    regions: dict[str, dict[str, Any]] = {}
    if len(warnings) == 1:
        total, points = await answer_curve(session, warnings[0], access)
        curve = str(answer_curve_svg(points, total))
        regions = {
            r["code"]: {
                "answered": r["answered"],
                "calls": r["calls"],
                "rate": r["answered"] / r["calls"] if r["calls"] else None,
            }
            for r in await region_tree(session, warnings[0].id, access)
        }
        latest = await latest_answers(session, warnings[0].id, access)
    return {"warnings": items, "answers": latest, "curve": curve, "regions": regions}


async def latest_answers(
    session: AsyncSession, warning_id: int, access: Access
) -> list[dict[str, Any]]:
    """The warning's `LATEST_ANSWERS` newest answers in the reader's scope, newest first."""
    rows = await session.execute(
        select(Answer, Responder.name, Region.name, Call.id)
        .join(Call, Call.id == Answer.call_id)
        .join(Responder, Responder.id == Answer.responder_id)
        .join(Region, Region.id == Call.region_id)
        .where(Call.warning_id == warning_id, region_condition(Call.region_id, access))
        .order_by(Answer.id.desc())
        .limit(LATEST_ANSWERS)
    )
    return [
        {
            "id": a.id,
            "call_id": call_id,
            "name": name,
            "region": region,
            "status": status_label(a.meaning, a.people),
            "channel": a.channel,
            "at": a.at.isoformat(),
        }
        for a, name, region, call_id in rows.all()
    ]
