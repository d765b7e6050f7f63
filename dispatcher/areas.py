"""A warning's areas, and their CAP `<polygon>`s and `<circle>`s as shapely geometries.

CAP writes points as "lat,lon" (WGS 84) and a polygon as four or more points whose first
and last are the same; a circle is "lat,lon radius" with the radius in kilometres. GeoJSON
and shapely work in (lon, lat), so points are swapped on the way in. A circle becomes a
64-sided polygon drawn on a local flat projection (good to well under 1 % at county scale);
a zero radius is the point itself. A polygon that crosses itself is repaired (shapely's
`make_valid`) rather than refused: real feeds carry such polygons.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from shapely import make_valid
from shapely.affinity import scale
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

KM_PER_DEGREE_LAT = 110.574
KM_PER_DEGREE_LON_AT_EQUATOR = 111.320
MAX_POINTS = 100_000  # the 450 KB IPAWS sample has polygons of a few thousand points


@dataclass(frozen=True)
class Area:
    description: str
    geocodes: tuple[tuple[str, str], ...]  # (valueName, value)
    polygons: tuple[str, ...]  # CAP polygon strings, as given
    circles: tuple[str, ...]  # CAP circle strings, as given


class ShapeError(ValueError):
    """A polygon or circle that cannot be read; the message says what is wrong."""


def _point(text: str) -> tuple[float, float]:
    """ "lat,lon" -> (lon, lat), checked to be on the globe."""
    lat_text, comma, lon_text = text.partition(",")
    if not comma:
        raise ShapeError(f"point {text!r} is not 'lat,lon'")
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise ShapeError(f"point {text!r} is not two numbers") from None
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ShapeError(f"point {text!r} is not two finite numbers")
    if not -90 <= lat <= 90:
        raise ShapeError(f"latitude {lat} in {text!r} is outside -90..90")
    if not -180 <= lon <= 180:
        raise ShapeError(f"longitude {lon} in {text!r} is outside -180..180")
    return lon, lat


def polygon_shape(text: str) -> BaseGeometry:
    """A CAP polygon as a valid shapely geometry; an unclosed ring is closed."""
    tokens = text.split()
    if len(tokens) > MAX_POINTS:
        raise ShapeError(f"polygon has {len(tokens)} points, more than {MAX_POINTS}")
    points = [_point(token) for token in tokens]
    if points and points[0] != points[-1]:
        points.append(points[0])
    if len(set(points)) < 3:
        raise ShapeError("polygon needs at least 3 distinct points")
    polygon = Polygon(points)
    return polygon if polygon.is_valid else make_valid(polygon)


def circle_shape(text: str) -> BaseGeometry:
    """A CAP circle ("lat,lon radius_km") as a polygon, or a point for radius 0."""
    centre_text, _, radius_text = text.strip().partition(" ")
    lon, lat = _point(centre_text)
    try:
        radius_km = float(radius_text.strip())
    except ValueError:
        raise ShapeError(f"circle {text!r} has no radius in km after the centre") from None
    if not math.isfinite(radius_km) or radius_km < 0:
        raise ShapeError(f"circle radius {radius_text.strip()!r} is not a distance >= 0")
    if radius_km > 5000:
        raise ShapeError(f"circle radius {radius_km} km is larger than 5000 km")
    centre = Point(lon, lat)
    if radius_km == 0:
        return centre
    dy = radius_km / KM_PER_DEGREE_LAT
    dx = radius_km / (KM_PER_DEGREE_LON_AT_EQUATOR * max(math.cos(math.radians(lat)), 0.01))
    return scale(centre.buffer(1.0, quad_segs=16), xfact=dx, yfact=dy, origin=centre)


def areas_shape(areas: Iterable[Area]) -> BaseGeometry | None:
    """The union of every polygon and circle of the areas, or None when they have none."""
    shapes = [polygon_shape(p) for area in areas for p in area.polygons]
    shapes += [circle_shape(c) for area in areas for c in area.circles]
    return unary_union(shapes) if shapes else None
