"""The "call again" ladder step for a chunk of due calls: a new send on each of the
step's channels to each person's first usable contact, written by the database.

Called by `dispatcher.step_work.Steps.run` inside the chunk's transaction; the sends
are marked enqueued, and enqueued once the chunk commits (see `ladder.apply_steps`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.bulk import id_in
from dispatcher.config import LadderStep
from dispatcher.fanout import CONTACT_KIND
from dispatcher.models import Base, Call, Contact
from dispatcher.vocabulary import AttemptPurpose, AttemptStatus

if TYPE_CHECKING:
    from dispatcher.ladder import DueCall

ATTEMPTS = Base.metadata.tables["attempts"]


async def call_again(
    session: AsyncSession, items: list[tuple[DueCall, LadderStep, int]], now: datetime
) -> list[int]:
    """Send again on the step's channels, to each person's first usable contacts: one
    `INSERT ... SELECT` per set of channels and try, however many calls."""
    groups: dict[tuple[tuple[str, ...], int], list[int]] = defaultdict(list)
    for call, step, index in items:
        # each channel once, should the step list one twice
        groups[(tuple(dict.fromkeys(step.channels)), index + 2)].append(call.id)
    attempt_ids: list[int] = []
    for (channels, try_number), call_ids in groups.items():
        attempt_ids += await _send_again(session, call_ids, channels, try_number, now)
    return attempt_ids


async def _send_again(
    session: AsyncSession,
    call_ids: list[int],
    channels: tuple[str, ...],
    try_number: int,
    now: datetime,
) -> list[int]:
    """Queue a send on each of `channels` for each of these calls whose person has a
    usable contact for it (their first, by position), marked enqueued (see
    `apply_steps`), numbered channel by channel as a fan-out numbers first sends.

    Each person's first contact of each kind is looked up once, however many of the
    channels use it (voice and SMS both go to the first phone): the calls and their
    contacts are read into a CTE that PostgreSQL materializes, since a subquery in the
    select list that is also filtered on would be looked up twice a row."""
    kinds = sorted({CONTACT_KIND[channel] for channel in channels})
    firsts = (
        select(
            Call.id,
            Call.warning_id,
            Call.responder_id,
            *(
                select(Contact.value)
                .where(
                    Contact.responder_id == Call.responder_id,
                    Contact.kind == kind,
                    Contact.bad.is_(False),
                )
                .order_by(Contact.position)
                .limit(1)
                .scalar_subquery()
                .label(f"first_{kind}")
                for kind in kinds
            ),
        )
        .where(id_in(session, Call.id, call_ids))
        .cte("firsts")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    sends = union_all(
        *(
            select(
                literal(number).label("number"),
                literal(channel).label("channel"),
                firsts.c.id,
                firsts.c.warning_id,
                firsts.c.responder_id,
                firsts.c[f"first_{CONTACT_KIND[channel]}"].label("address"),
            ).where(firsts.c[f"first_{CONTACT_KIND[channel]}"].is_not(None))
            for number, channel in enumerate(channels)
        )
    ).subquery("sends")
    at = literal(now, ATTEMPTS.c.due_at.type)
    rows = select(
        sends.c.warning_id,
        sends.c.id,
        sends.c.responder_id,
        literal(AttemptPurpose.CALL.value),
        sends.c.channel,
        sends.c.address,
        literal(AttemptStatus.QUEUED.value),
        literal(try_number),
        at,
        at,
        at,
    ).order_by(sends.c.number, sends.c.id)
    columns = ["warning_id", "call_id", "responder_id", "purpose", "channel", "address"]
    columns += ["status", "try_number", "due_at", "enqueued_at", "updated_at"]
    inserted = await session.scalars(
        insert(ATTEMPTS).from_select(columns, rows).returning(ATTEMPTS.c.id)
    )
    return sorted(inserted)
