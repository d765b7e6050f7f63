"""Region geometries for the directory import: `regions.geojson` beside the CSV files.

A GeoJSON FeatureCollection whose features carry `properties.code` (a region code of
`regions.csv` or of the database) and a Polygon or MultiPolygon geometry in WGS 84
longitude/latitude, as GIS tools export administrative boundaries. Each feature is checked
(known code, no repeats, a readable and valid polygon on the globe); a self-crossing ring
is reported rather than repaired, since the boundary is the operator's to fix. Geometries
are stored on `Region.geometry` as GeoJSON and matched against CAP polygons and circles
by `dispatcher.targeting`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapely.geometry import mapping
from shapely.geometry import shape as geojson_shape
from shapely.validation import explain_validity

from dispatcher.directory_rows import RowError

GEOMETRY_FILE = "regions.geojson"
GEOMETRY_TYPES = ("Polygon", "MultiPolygon")


@dataclass(frozen=True)
class RegionGeometry:
    code: str
    geometry: dict[str, Any]  # GeoJSON


def _problem(index: int, code: str | None, message: str) -> RowError:
    which = f"feature {index}" + (f" (code {code})" if code else "")
    return RowError(GEOMETRY_FILE, 0, f"{which}: {message}")


def _check_feature(
    index: int, feature: Any, codes: set[str], seen: dict[str, int]
) -> RegionGeometry | RowError:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return _problem(index, None, "not a GeoJSON Feature")
    properties = feature.get("properties") or {}
    code = str(properties.get("code", "")).strip() if isinstance(properties, dict) else ""
    if not code:
        return _problem(index, None, "properties.code: empty; name the region code")
    if code not in codes:
        return _problem(index, code, "properties.code: unknown region code")
    if code in seen:
        return _problem(index, code, f"properties.code: repeats feature {seen[code]}")
    seen[code] = index
    data = feature.get("geometry")
    if not isinstance(data, dict) or data.get("type") not in GEOMETRY_TYPES:
        return _problem(index, code, "geometry: must be a Polygon or MultiPolygon")
    try:
        geometry = geojson_shape(data)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        return _problem(index, code, f"geometry: unreadable coordinates ({exc})")
    if geometry.is_empty:
        return _problem(index, code, "geometry: empty")
    west, south, east, north = geometry.bounds
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        return _problem(index, code, "geometry: coordinates are not longitude, latitude")
    if not geometry.is_valid:
        return _problem(index, code, f"geometry: invalid polygon ({explain_validity(geometry)})")
    return RegionGeometry(code, dict(mapping(geometry)))


def read_geometries(
    directory: Path, codes: set[str]
) -> tuple[list[RegionGeometry], list[RowError]]:
    """The geometries of `regions.geojson` (none when absent) and the problems found."""
    path = directory / GEOMETRY_FILE
    if not path.is_file():
        return [], []
    try:
        document = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return [], [RowError(GEOMETRY_FILE, 0, f"not readable as GeoJSON: {exc}")]
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        return [], [RowError(GEOMETRY_FILE, 0, "not a GeoJSON FeatureCollection")]
    features = document.get("features")
    if not isinstance(features, list):
        return [], [RowError(GEOMETRY_FILE, 0, "features: not a list")]
    geometries: list[RegionGeometry] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for index, feature in enumerate(features, start=1):
        checked = _check_feature(index, feature, codes, seen)
        if isinstance(checked, RowError):
            errors.append(checked)
        else:
            geometries.append(checked)
    return geometries, errors
