"""The sample county's boundaries for the map: `regions.geojson` drawn as nested strips.

Fictional 青溪县 gets a rectangle; its townships split it west to east, each township's
villages split it north to south, each village's grids split it west to east again. Not a
real place, but real GeoJSON through the same import, so `/map` has something to draw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from dispatcher.directory_geometry import GEOMETRY_FILE

# West, south, east, north in WGS 84: somewhere in the hills of northern Guangdong.
COUNTY_BOUNDS = (113.60, 24.60, 114.20, 25.00)


class TreeNode(Protocol):
    code: str
    children: list[Any]


def _box(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [[[round(x, 6), round(y, 6)] for x, y in ring]]}


def _features(node: TreeNode, bounds: tuple[float, float, float, float], depth: int) -> list[Any]:
    west, south, east, north = bounds
    features = [{"type": "Feature", "properties": {"code": node.code}, "geometry": _box(*bounds)}]
    count = len(node.children)
    for index, child in enumerate(node.children):
        if depth % 2 == 0:  # split west to east
            step = (east - west) / count
            part = (west + index * step, south, west + (index + 1) * step, north)
        else:  # split north to south
            step = (north - south) / count
            part = (west, north - (index + 1) * step, east, north - index * step)
        features += _features(child, part, depth + 1)
    return features


def write_demo_geometry(directory: Path, county: TreeNode) -> None:
    collection = {"type": "FeatureCollection", "features": _features(county, COUNTY_BOUNDS, 0)}
    (directory / GEOMETRY_FILE).write_text(json.dumps(collection), encoding="utf-8")
