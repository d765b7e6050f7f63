"""The dashboard's figures for one warning, in the reader's scope.

The per-channel funnel (sent → delivered → answered, per channel and provider) and the
time-to-answer curve (share of calls answered against minutes since the warning came
in), both summed from the counters of `dispatcher.counters`, and the people lists (the
silent with their phones and last attempt, help requests, the answered) that the warning
page, the map and the report share.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.access import Access
from dispatcher.counters import (
    ANSWERED,
    DELIVERED,
    SENT,
    answers_per_second,
    call_counts,
    funnel_counts,
)
from dispatcher.models import Attempt, Call, Contact, Region, Responder, Warning
from dispatcher.summary import answer_history
from dispatcher.vocabulary import AttemptPurpose, CallState, status_label

ONE_SECOND = timedelta(seconds=1)
SILENT_STATES = (CallState.PENDING, CallState.CALLING, CallState.ESCALATED, CallState.UNANSWERED)


async def funnel(session: AsyncSession, warning_id: int, access: Access) -> list[dict[str, Any]]:
    """Per (channel, provider): attempts, sent, delivered, and calls first answered there
    (credited to the attempt they answered when known), from the funnel's counters."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(channel: str, provider: str | None) -> dict[str, Any]:
        key = (channel, provider or "—")
        return rows.setdefault(
            key,
            {"channel": key[0], "provider": key[1], "attempts": 0, "sent": 0, "delivered": 0}
            | {"answered": 0},
        )

    for channel, provider, stage, count in await funnel_counts(session, warning_id, access):
        figures = row(channel, provider)
        if stage == ANSWERED:
            figures["answered"] += count
            continue
        figures["attempts"] += count
        figures["sent"] += count if stage in (SENT, DELIVERED) else 0
        figures["delivered"] += count if stage == DELIVERED else 0
    return sorted(rows.values(), key=lambda r: (r["channel"], r["provider"]))


async def answer_curve(
    session: AsyncSession, warning: Warning, access: Access
) -> tuple[int, list[tuple[float, float]]]:
    """(calls in scope, [(minutes since the warning came in, share answered by then)]).

    One point per second in which calls were first answered, at its end: the share is
    exact there, and the steps within a second, under two pixels apart on the shortest
    (ten-minute) axis, are drawn as one column anyway (`svg.answer_curve_svg`). Summed
    from the curve's counters, not read an answer at a time.
    """
    total = sum(n for _, _, n, _ in await call_counts(session, warning.id, access))
    points: list[tuple[float, float]] = []
    answered = 0
    for second, count in await answers_per_second(session, warning.id, access):
        answered += count
        minutes = max(0.0, (second + ONE_SECOND - warning.received_at).total_seconds() / 60)
        points.append((minutes, answered / total if total else 0.0))
    return total, points


# A page lists at most this many people a kind; its headings count everyone.
LISTED_PEOPLE = 500


async def people(
    session: AsyncSession,
    warning_id: int,
    access: Access,
    *conditions: Any,
    limit: int | None = None,
    reach: bool = True,
) -> list[dict[str, Any]]:
    """Calls of the warning in scope matching `conditions`, with the person, their answers
    and, unless not `reach`, their phones (as this reader may see them) and the call's
    last attempt; grouped by place (region path), the most escalated first within a place.
    A list of people who answered shows neither: reading them was a fifth of the page."""
    rows = (
        await session.execute(
            select(Call, Responder, Region)
            .join(Responder, Responder.id == Call.responder_id)
            .join(Region, Region.id == Call.region_id)
            .where(Call.warning_id == warning_id, access.regions(), *conditions)
            # by place first: PostgreSQL walks the regions in path order and each one's
            # calls (ix_calls_warning_region), and stops at `limit`, where sorting
            # 100,000 answered calls by escalation step first took ~150 ms
            .order_by(Region.path, Call.escalation_step.desc(), Call.id)
            .limit(limit or LISTED_PEOPLE)
        )
    ).all()
    responder_ids = [r.id for _, r, _ in rows]
    call_ids = [c.id for c, _, _ in rows]
    phones: dict[int, list[str]] = {}
    last: dict[int, Attempt] = {}
    if reach:
        phones, last = await _phones(session, responder_ids), await _last_sends(session, call_ids)
    history = await answer_history(session, call_ids)
    return [
        {
            "call": c,
            "responder": r,
            "region": g,
            "phones": [
                {"shown": access.phone(p), "dial": p if access.sees_phones else None}
                for p in phones.get(r.id, [])
            ],
            "status": status_label(c.answer_meaning, c.evacuated),
            "history": history.get(c.id, []),
            "last_attempt": last.get(c.id),
        }
        for c, r, g in rows
    ]


async def _phones(session: AsyncSession, responder_ids: list[int]) -> dict[int, list[str]]:
    phones: dict[int, list[str]] = {}
    for responder_id, value in await session.execute(
        select(Contact.responder_id, Contact.value)
        .where(Contact.kind == "phone", Contact.responder_id.in_(responder_ids), ~Contact.bad)
        .order_by(Contact.position)
    ):
        phones.setdefault(responder_id, []).append(value)
    return phones


async def _last_sends(session: AsyncSession, call_ids: list[int]) -> dict[int, Attempt]:
    latest = (
        select(func.max(Attempt.id))
        .where(Attempt.call_id.in_(call_ids), Attempt.purpose == AttemptPurpose.CALL)
        .group_by(Attempt.call_id)
    )
    last: dict[int, Attempt] = {}
    for attempt in await session.scalars(select(Attempt).where(Attempt.id.in_(latest))):
        if attempt.call_id is not None:
            last[attempt.call_id] = attempt
    return last


def minutes_since(start: datetime, now: datetime) -> int:
    return max(0, int((now - start).total_seconds() // 60))


def since_label(start: datetime, now: datetime) -> str:
    """'12分钟前', '3小时5分钟前', '2天前'."""
    minutes = minutes_since(start, now)
    if minutes < 60:
        return f"{minutes}分钟前"
    if minutes < 24 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours}小时{rest}分钟前" if rest else f"{hours}小时前"
    return f"{minutes // (24 * 60)}天前"
