"""SVG drawn on the server: the time-to-answer curve and the map of region geometries.

No script, no tiles, no fonts from elsewhere: the markup is inline in the page and works
offline. Text goes through `markupsafe.escape`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from markupsafe import Markup, escape

CURVE_WIDTH, CURVE_HEIGHT, CURVE_PAD = 640, 220, 36


def rate_colour(rate: float | None) -> str:
    """Red (nobody answered) through amber to green (all answered); grey without calls."""
    if rate is None:
        return "#d9d9d9"
    if rate < 0.5:
        return "#d62828" if rate < 0.25 else "#f77f00"
    return "#e9c46a" if rate < 0.8 else "#2a9d8f"


def answer_curve_svg(points: Sequence[tuple[float, float]], total: int) -> Markup:
    """Share answered (0-100 %) against minutes since the warning, as a step line."""
    width, height, pad = CURVE_WIDTH, CURVE_HEIGHT, CURVE_PAD
    span = max([p[0] for p in points] + [10.0])
    span = math.ceil(span / 10) * 10

    def x(minutes: float) -> float:
        return pad + (width - 2 * pad) * minutes / span

    def y(share: float) -> float:
        return height - pad - (height - 2 * pad) * share

    parts = [
        f'<svg class="curve" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="应答率随时间变化" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" '
        'fill="#fafafa" stroke="#ccc"/>',
    ]
    for share in (0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{pad}" x2="{width - pad}" y1="{y(share):.1f}" y2="{y(share):.1f}" '
            f'stroke="#e5e5e5"/><text x="{pad - 4}" y="{y(share) + 4:.1f}" '
            f'text-anchor="end" font-size="11">{int(share * 100)}%</text>'
        )
    for step in range(0, int(span) + 1, max(10, int(span) // 6 // 10 * 10)):
        parts.append(
            f'<text x="{x(step):.1f}" y="{height - pad + 14}" text-anchor="middle" '
            f'font-size="11">{step}</text>'
        )
    parts.append(
        f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle" font-size="11">'
        f"距预警发布（分钟）· 共 {total} 人</text>"
    )
    if points:
        steps: list[tuple[str, str]] = []
        for minutes, share in points:
            end = (f"{x(minutes):.1f}", f"{y(share):.1f}")
            if steps and steps[-1][0] == end[0]:
                # the same 0.1 px column: only its last (highest) share shows, so tens of
                # thousands of answers draw as one step per column, not one each
                steps[-1] = end
            else:
                steps.append(end)
        path = [f"M{x(0):.1f},{y(0):.1f}"] + [f"H{h}V{v}" for h, v in steps]
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="#2a9d8f" stroke-width="2"/>')
    else:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#777">'
            "尚无应答</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _rings(geometry: dict[str, Any]) -> Iterable[list[list[float]]]:
    if geometry.get("type") == "Polygon":
        yield from geometry["coordinates"]
    elif geometry.get("type") == "MultiPolygon":
        for polygon in geometry["coordinates"]:
            yield from polygon


def map_svg(shapes: Sequence[dict[str, Any]], width: int = 760) -> Markup:
    """Each shape: `geometry` (GeoJSON), `code`, `name`, `rate`, `silent`, `open_tasks`,
    `href`; drawn shallow first so villages and grids lie on their township."""
    coordinates = [pt for s in shapes for ring in _rings(s["geometry"]) for pt in ring]
    if not coordinates:
        return Markup("")
    west = min(p[0] for p in coordinates)
    east = max(p[0] for p in coordinates)
    south = min(p[1] for p in coordinates)
    north = max(p[1] for p in coordinates)
    # Equirectangular, squeezed by cos(latitude): fine at a county's scale.
    squeeze = math.cos(math.radians((north + south) / 2))
    span_x = max((east - west) * squeeze, 1e-9)
    span_y = max(north - south, 1e-9)
    height = max(200, int(width * span_y / span_x))
    pad = 10
    scale = min((width - 2 * pad) / span_x, (height - 2 * pad) / span_y)

    def point(p: Sequence[float]) -> str:
        return f"{pad + (p[0] - west) * squeeze * scale:.1f},{pad + (north - p[1]) * scale:.1f}"

    parts = [
        f'<svg class="map" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
        'role="img" aria-label="一张图：各区域应答率">'
    ]
    marks = []
    for shape in sorted(shapes, key=lambda s: s.get("depth", 0)):
        rings = list(_rings(shape["geometry"]))
        d = " ".join("M" + " L".join(point(p) for p in ring) + " Z" for ring in rings)
        label = escape(f"{shape['name']}：应答率 {_percent(shape['rate'])}")
        stroke = "#7a0000" if shape["silent"] else "#555"
        parts.append(
            f'<a href="{escape(shape["href"])}"><path d="{d}" fill="{rate_colour(shape["rate"])}" '
            f'fill-opacity="0.85" stroke="{stroke}" stroke-width="{2 if shape["silent"] else 0.8}" '
            f'data-code="{escape(shape["code"])}" class="region-shape"><title>{label}</title>'
            "</path></a>"
        )
        if shape["silent"] or shape["open_tasks"]:
            outer = rings[0]
            cx = sum(p[0] for p in outer) / len(outer)
            cy = sum(p[1] for p in outer) / len(outer)
            x, y = point((cx, cy)).split(",")
            if shape["silent"]:
                marks.append(
                    f'<circle cx="{x}" cy="{y}" r="7" fill="#fff" stroke="#d62828" '
                    f'stroke-width="3" class="silent-mark"><title>{escape(shape["name"])}：'
                    f"{shape['silent']} 人未应答</title></circle>"
                )
            if shape["open_tasks"]:
                marks.append(
                    f'<text x="{float(x) + 9:.1f}" y="{float(y) + 5:.1f}" font-size="14" '
                    f'class="task-mark">门<title>{escape(shape["name"])}：敲门任务 '
                    f"{shape['open_tasks']} 个</title></text>"
                )
    parts.extend(marks)
    parts.append("</svg>")
    return Markup("".join(parts))


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.0f}%"
