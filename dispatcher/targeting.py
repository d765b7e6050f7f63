"""Areas to regions to responders: who must hear a warning.

In this version a CAP `<geocode>` value is a region code and selects that region's whole
subtree (the materialised `path` makes that a prefix match). The level's policy filters
duties by role, so a blue warning does not wake the county leader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.models import Duty, Region, Responder, Speaker


@dataclass
class Target:
    region_ids: set[int] = field(default_factory=set)
    # responder id -> the most specific duty region in the targeted area
    responders: dict[int, int] = field(default_factory=dict)
    speakers: list[int] = field(default_factory=list)
    unknown_codes: list[str] = field(default_factory=list)


async def resolve_target(session: AsyncSession, codes: list[str], roles: list[str]) -> Target:
    target = Target()
    if not codes:
        return target
    roots = (await session.scalars(select(Region).where(Region.code.in_(codes)))).all()
    found = {r.code for r in roots}
    target.unknown_codes = [c for c in codes if c not in found]
    if not roots:
        return target
    in_subtree = or_(*(Region.path.startswith(r.path) for r in roots))
    regions = (await session.execute(select(Region.id, Region.depth).where(in_subtree))).all()
    depth = {rid: d for rid, d in regions}
    target.region_ids = set(depth)
    duty_rows = await session.execute(
        select(Duty.responder_id, Duty.region_id, Responder.role)
        .join(Responder, Responder.id == Duty.responder_id)
        .join(Region, Region.id == Duty.region_id)
        .where(in_subtree, Responder.active.is_(True))
    )
    for responder_id, region_id, role in duty_rows:
        if roles and role not in roles:
            continue
        current = target.responders.get(responder_id)
        if current is None or depth[region_id] > depth[current]:
            target.responders[responder_id] = region_id
    speaker_ids = await session.scalars(
        select(Speaker.id).join(Region, Region.id == Speaker.region_id).where(in_subtree)
    )
    target.speakers = list(speaker_ids)
    return target
