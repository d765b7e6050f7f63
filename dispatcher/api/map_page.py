"""`/map` (一张图): the regions' own geometries drawn as SVG, coloured by answer rate.

Regions where someone is still silent get a ring, regions with open door-knock tasks a 门;
each shape links to the warning page drilled down to it. Regions without a geometry are
listed beside the map with their figures. No tiles, nothing fetched: it works offline.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from dispatcher.access import region_condition, warning_condition
from dispatcher.api.deps import SessionDep
from dispatcher.api.session import AccessDep, warning_or_404
from dispatcher.api.web import render_page
from dispatcher.figures import SILENT_STATES
from dispatcher.models import Call, DoorKnockTask, Region, Warning
from dispatcher.summary import region_tree
from dispatcher.svg import map_svg, rate_colour

router = APIRouter(tags=["dashboard"], include_in_schema=False)
OPEN_TASK_STATES = ("open", "accepted")


@router.get("/map", response_class=HTMLResponse)
async def map_page(
    request: Request, session: SessionDep, access: AccessDep, warning: int | None = None
) -> HTMLResponse:
    if warning is not None:
        chosen: Warning | None = await warning_or_404(session, access, warning)
    else:
        chosen = await session.scalar(
            select(Warning)
            .where(warning_condition(access))
            .order_by((Warning.state == "active").desc(), Warning.id.desc())
            .limit(1)
        )
    figures: dict[str, dict[str, Any]] = {}
    silent: dict[int, int] = {}
    tasks: dict[int, int] = {}
    if chosen is not None:
        figures = {r["code"]: r for r in await region_tree(session, chosen.id, access)}
        silent = dict(
            (
                await session.execute(
                    select(Call.region_id, func.count())
                    .where(Call.warning_id == chosen.id, Call.state.in_(SILENT_STATES))
                    .group_by(Call.region_id)
                )
            ).all()
        )
        tasks = dict(
            (
                await session.execute(
                    select(DoorKnockTask.region_id, func.count())
                    .where(
                        DoorKnockTask.warning_id == chosen.id,
                        DoorKnockTask.status.in_(OPEN_TASK_STATES),
                        region_condition(DoorKnockTask.region_id, access),
                    )
                    .group_by(DoorKnockTask.region_id)
                )
            ).all()
        )
    shapes, unmapped = [], []
    for region in await session.scalars(
        select(Region).where(access.regions()).order_by(Region.path).limit(5000)
    ):
        row = figures.get(region.code)
        rate = row["answered"] / row["calls"] if row and row["calls"] else None
        item = {
            "code": region.code,
            "name": region.name,
            "depth": region.depth,
            "rate": rate,
            "calls": row["calls"] if row else 0,
            "answered": row["answered"] if row else 0,
            "silent": silent.get(region.id, 0),
            "open_tasks": tasks.get(region.id, 0),
            "colour": rate_colour(rate),
            "href": f"/warnings/{chosen.id}?region={region.code}" if chosen else "#",
        }
        if region.geometry:
            shapes.append({**item, "geometry": region.geometry})
        elif row:
            unmapped.append(item)
    return render_page(
        request,
        "map.html",
        {"warning": chosen, "svg": map_svg(shapes), "mapped": len(shapes), "unmapped": unmapped},
    )
