"""Areas to regions to responders: who must hear a warning.

Two ways select regions, and the warning targets their union:

* Geocodes. A value is looked up as a region code; a 6-digit county or 9-digit township
  statistical code also matches its 12-digit form (441799 -> 441799000000) and the other
  way round. A geocode whose `valueName` is a configured alias scheme (`geocode_aliases`,
  e.g. SAME) is translated through that table first. A matched region selects its subtree
  (the materialised `path` makes that a prefix match).
* Polygons and circles, against the regions' GeoJSON geometries (shapely). A region the
  shapes fully cover selects its subtree. A region they only partly cover selects itself,
  and below it the children whose own geometry meets the shapes (decided the same way) and
  the children without a geometry (with their subtrees: unknown extent is warned, not
  skipped). So a partly covered village selects its grids that intersect.

The level's policy then filters duties by role, so a blue warning does not wake the county
leader. Sender area permissions are checked here too (`allowed_paths`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shapely.geometry import shape as geojson_shape
from shapely.geometry.base import BaseGeometry
from shapely.prepared import prep
from sqlalchemy import ColumnElement, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.models import Duty, Region, Responder, Speaker

STATISTICAL_LENGTHS = (6, 9, 12)


@dataclass
class Target:
    region_ids: set[int] = field(default_factory=set)
    # responder id -> the most specific duty region in the targeted area
    responders: dict[int, int] = field(default_factory=dict)
    speakers: list[int] = field(default_factory=list)
    unknown_codes: list[str] = field(default_factory=list)
    # (geocode value, region code, region path) of every geocode that named a region
    by_geocode: list[tuple[str, str, str]] = field(default_factory=list)
    # codes of the regions the polygons and circles selected (fully or partly covered)
    by_shape: list[str] = field(default_factory=list)


def code_forms(value: str) -> list[str]:
    """The region codes a geocode value may stand for: itself, and for a statistical code
    its 6/9/12-digit forms (441799 <-> 441799000000, 441799100 <-> 441799100000)."""
    value = value.strip()
    forms = [value]
    if value.isdigit() and len(value) in STATISTICAL_LENGTHS:
        padded = value.ljust(12, "0")
        forms.append(padded)
        if padded[6:] == "000000":
            forms.append(padded[:6])  # a county
        elif padded[9:] == "000":
            forms.append(padded[:9])  # a township
    return list(dict.fromkeys(forms))


def _geocode_values(
    geocodes: Iterable[tuple[str, str]], aliases: dict[str, dict[str, str]]
) -> tuple[list[str], list[str]]:
    """(values to look up as region codes, values of alias schemes with no entry)."""
    schemes = {name.casefold(): table for name, table in aliases.items()}
    values: list[str] = []
    unknown: list[str] = []
    for name, value in geocodes:
        table = schemes.get(name.strip().casefold())
        if table is None:
            values.append(value)
        elif value.strip() in table:
            values.append(table[value.strip()])
        else:
            unknown.append(f"{name}:{value}")
    return list(dict.fromkeys(values)), unknown


async def _regions_by_geocode(
    session: AsyncSession, values: list[str], target: Target
) -> list[tuple[str, str]]:
    """(code, path) of the regions the values name; unmatched values go to unknown_codes."""
    forms = {value: code_forms(value) for value in values}
    wanted = {form for candidates in forms.values() for form in candidates}
    found: dict[str, str] = {}
    if wanted:
        rows = await session.execute(
            select(Region.code, Region.path).where(Region.code.in_(wanted))
        )
        found = dict(rows.all())
    matched: list[tuple[str, str]] = []
    for value, candidates in forms.items():
        hits = [code for code in candidates if code in found]
        if hits:
            matched.append((hits[0], found[hits[0]]))
            target.by_geocode.append((value, hits[0], found[hits[0]]))
        else:
            target.unknown_codes.append(value)
    return matched


def _region_geometry(data: dict[str, Any]) -> BaseGeometry | None:
    try:
        geometry = geojson_shape(data)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # the import checks geometries; a bad one left in the table is skipped
    return geometry if not geometry.is_empty else None


async def _regions_by_shape(
    session: AsyncSession, area: BaseGeometry
) -> tuple[list[tuple[str, str]], list[int]]:
    """(code, path) of regions whose subtree is selected, and ids selected alone."""
    rows = (
        await session.execute(
            select(Region.id, Region.code, Region.path, Region.geometry).where(
                Region.geometry.is_not(None)
            )
        )
    ).all()
    prepared = prep(area)
    subtrees: list[tuple[str, str]] = []
    partial: list[int] = []
    for region_id, code, path, data in rows:
        geometry = _region_geometry(data) if isinstance(data, dict) else None
        if geometry is None or not prepared.intersects(geometry):
            continue
        if prepared.covers(geometry):
            subtrees.append((code, path))
        elif area.area == 0 or geometry.area == 0 or area.intersection(geometry).area > 0:
            partial.append(region_id)  # more than a shared border
    if partial:
        # children of a partly covered region without a geometry of their own: warned
        children = await session.execute(
            select(Region.code, Region.path).where(
                Region.parent_id.in_(partial), Region.geometry.is_(None)
            )
        )
        subtrees += [(code, path) for code, path in children.all()]
    return subtrees, partial


def _within(path: str, allowed_paths: list[str] | None) -> bool:
    return allowed_paths is None or any(path.startswith(prefix) for prefix in allowed_paths)


async def resolve_target(
    session: AsyncSession,
    *,
    geocodes: Iterable[tuple[str, str]],
    area: BaseGeometry | None,
    roles: list[str],
    aliases: dict[str, dict[str, str]] | None = None,
    allowed_paths: list[str] | None = None,
) -> Target:
    """The regions, responders and speakers a warning reaches.

    With `allowed_paths` (a sender's permitted subtrees), regions matched by geometry
    outside them are dropped; geocodes outside them must be refused by the caller
    beforehand (see `dispatcher.senders`).
    """
    target = Target()
    values, unknown_alias = _geocode_values(geocodes, aliases or {})
    subtrees = await _regions_by_geocode(session, values, target)
    target.unknown_codes += unknown_alias
    partial: list[int] = []
    if area is not None:
        shape_subtrees, shape_partial = await _regions_by_shape(session, area)
        shape_subtrees = [(c, p) for c, p in shape_subtrees if _within(p, allowed_paths)]
        subtrees += shape_subtrees
        target.by_shape += [code for code, _ in shape_subtrees]
        if shape_partial:
            rows = await session.execute(
                select(Region.id, Region.code, Region.path).where(Region.id.in_(shape_partial))
            )
            for region_id, code, path in rows.all():
                if _within(path, allowed_paths):
                    partial.append(region_id)
                    target.by_shape.append(code)
    if not subtrees and not partial:
        return target
    conditions: list[ColumnElement[bool]] = [Region.path.startswith(p) for _, p in subtrees]
    if partial:
        conditions.append(Region.id.in_(partial))
    selected = or_(false(), *conditions)
    target.region_ids = set(await session.scalars(select(Region.id).where(selected)))
    deepest: dict[int, int] = {}
    for responder_id, region_id, depth in await _duties(session, selected, roles):
        if depth > deepest.get(responder_id, -1):
            deepest[responder_id] = depth
            target.responders[responder_id] = region_id
    speaker_ids = await session.scalars(
        select(Speaker.id).join(Region, Region.id == Speaker.region_id).where(selected)
    )
    target.speakers = list(speaker_ids)
    return target


async def _duties(
    session: AsyncSession, selected: ColumnElement[bool], roles: list[str]
) -> Iterable[tuple[int, int, int]]:
    """(responder id, duty region id, that region's depth) of the active responders with
    one of `roles` (any, if none) on duty in the selected regions. On PostgreSQL they come
    as three arrays in one row: read as 100,000 rows, a provincial warning's duties took
    three times as long, and the webhook's first sends wait for them."""
    conditions = [selected, Responder.active.is_(True)]
    if roles:
        conditions.append(Responder.role.in_(roles))
    columns = (Duty.responder_id, Duty.region_id, Region.depth)
    postgresql = session.get_bind().dialect.name == "postgresql"
    query = (
        select(*(func.array_agg(column) for column in columns)) if postgresql else select(*columns)
    )
    query = (
        query.select_from(Duty)
        .join(Responder, Responder.id == Duty.responder_id)
        .join(Region, Region.id == Duty.region_id)
        .where(*conditions)
    )
    if postgresql:
        arrays = (await session.execute(query)).one()
        return zip(*(array or [] for array in arrays), strict=True)
    return [(r, g, d) for r, g, d in await session.execute(query)]
