"""`/warnings/{id}`: one warning for the duty officer, with drill-down by region.

`?region=CODE` narrows the whole page to that region's subtree (within the reader's own
scope): the rate over its child regions, the funnel, the curve, the silent, help requests,
broadcasts and tasks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.access import Access
from dispatcher.api.deps import RuntimeDep, SessionDep
from dispatcher.api.session import AccessDep, region_or_404, warning_or_404
from dispatcher.api.web import render_page
from dispatcher.boards import broadcast_rows, task_rows
from dispatcher.figures import SILENT_STATES, answer_curve, funnel, people, since_label
from dispatcher.live import latest_answers
from dispatcher.models import Call, Region
from dispatcher.summary import region_tree, warning_summary
from dispatcher.svg import answer_curve_svg, rate_colour
from dispatcher.vocabulary import CallState, Meaning

router = APIRouter(tags=["dashboard"], include_in_schema=False)


async def _breadcrumbs(session: AsyncSession, access: Access, node: Region) -> list[Region]:
    codes = [code for code in node.path.strip("/").split("/") if code]
    regions = {
        r.code: r for r in await session.scalars(select(Region).where(Region.code.in_(codes)))
    }
    return [regions[c] for c in codes if c in regions and access.covers(regions[c].path)]


def _children(tree: list[dict[str, Any]], node: Region | None) -> list[dict[str, Any]]:
    """The rows one level below `node`, or the top rows of the tree when no node."""
    if node is not None:
        rows = [r for r in tree if r["parent_id"] == node.id]
    else:
        ids = {r["id"] for r in tree}
        rows = [r for r in tree if r["parent_id"] not in ids]
    for r in rows:
        r["rate"] = r["answered"] / r["calls"] if r["calls"] else None
        r["colour"] = rate_colour(r["rate"])
    return rows


@router.get("/warnings/{warning_id}", response_class=HTMLResponse)
async def warning_page(
    warning_id: int,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    access: AccessDep,
    region: str | None = None,
) -> HTMLResponse:
    warning = await warning_or_404(session, access, warning_id)
    node = await region_or_404(session, access, region) if region else None
    scope = replace(access, region_path=node.path, region_code=node.code) if node else access
    now = runtime.clock.now()
    # one level of the tree: below the node, else the reader's own top
    top = scope.region_path.strip("/").count("/") if scope.region_path else 0
    tree = await region_tree(session, warning.id, scope, depth=node.depth + 1 if node else top)
    total, points = await answer_curve(session, warning, scope)
    summary = await warning_summary(session, warning, scope)
    calls = summary["calls"]

    silent_total = calls["pending"] + calls["escalated"] + calls["unanswered"]

    async def listed(count: int, *conditions: Any, reach: bool = True) -> list[dict[str, Any]]:
        # no calls in the list's states (the counters say so): nobody to look for
        return await people(session, warning.id, scope, *conditions, reach=reach) if count else []

    return render_page(
        request,
        "warning.html",
        {
            "warning": warning,
            "node": node,
            "breadcrumbs": await _breadcrumbs(session, access, node) if node else [],
            "summary": summary,
            "since": since_label(warning.received_at, now),
            "children": _children(tree, node),
            "funnel": await funnel(session, warning.id, scope),
            "curve": answer_curve_svg(points, total),
            "help": await listed(calls["help"], Call.answer_meaning == Meaning.HELP),
            "silent": await listed(silent_total, Call.state.in_(SILENT_STATES)),
            # the lists stop at 500 people: the headings count everyone
            "silent_total": silent_total,
            "answered": await listed(
                calls["answered"],
                Call.state == CallState.ANSWERED,
                Call.answer_meaning != Meaning.HELP,
                reach=False,  # answered: no phones or last send to show
            ),
            "broadcasts": await broadcast_rows(session, warning.id, scope),
            "tasks": await task_rows(session, scope, warning_id=warning.id),
            "latest": await latest_answers(session, warning.id, scope),
            "region_query": f"?region={node.code}" if node else "",
        },
    )
