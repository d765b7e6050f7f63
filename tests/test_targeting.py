"""Geographic targeting against a small directory with region boundaries.

青溪县 is the square lon 111.0-112.0, lat 21.0-22.0. 城关镇 is its west half and 石门乡
its east half. Under 城关镇: 上坪村 (lon 111.0-111.25) with two grids, 下洞村 (111.25-111.5).
Under 石门乡: 南岭村 (the south half, with a boundary) and 北坑村 (no boundary on file).
One responder answers for each region, named after it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dispatcher.areas import areas_shape, circle_shape, polygon_shape
from dispatcher.cap import Area
from dispatcher.directory import DirectoryImportError, import_directory
from dispatcher.models import Region, Responder
from dispatcher.runtime import Runtime
from dispatcher.targeting import Target, code_forms, resolve_target

REGIONS = """code,name,level,parent_code
441799000000,青溪县,county,
441799100000,城关镇,township,441799000000
441799100001,上坪村,village,441799100000
441799100001001,上坪一组,grid,441799100001
441799100001002,上坪二组,grid,441799100001
441799100002,下洞村,village,441799100000
441799200000,石门乡,township,441799000000
441799200001,南岭村,village,441799200000
441799200002,北坑村,village,441799200000
"""
BOXES = {  # code -> (west, south, east, north)
    "441799000000": (111.0, 21.0, 112.0, 22.0),
    "441799100000": (111.0, 21.0, 111.5, 22.0),
    "441799100001": (111.0, 21.0, 111.25, 22.0),
    "441799100001001": (111.0, 21.0, 111.125, 22.0),
    "441799100001002": (111.125, 21.0, 111.25, 22.0),
    "441799100002": (111.25, 21.0, 111.5, 22.0),
    "441799200000": (111.5, 21.0, 112.0, 22.0),
    "441799200001": (111.5, 21.0, 112.0, 21.5),
}
NAMES = {line.split(",")[0]: line.split(",")[1] for line in REGIONS.splitlines()[1:]}


def box(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def cap_polygon(west: float, south: float, east: float, north: float) -> str:
    """The same box as a CAP polygon: "lat,lon" pairs."""
    points = [(south, west), (south, east), (north, east), (north, west), (south, west)]
    return " ".join(f"{lat},{lon}" for lat, lon in points)


def write_directory(root: Path, features: list[dict[str, Any]] | None = None) -> Path:
    root.mkdir(exist_ok=True)
    (root / "regions.csv").write_text(REGIONS, encoding="utf-8")
    rows = ["id,name,phone,wecom_userid,role,region_codes,backup_id,supervisor_id"]
    for index, (code, name) in enumerate(NAMES.items()):
        rows.append(f"r{index},{name},1390000{index:04d},,grid_worker,{code},,")
    (root / "responders.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    if features is None:
        features = [
            {"type": "Feature", "properties": {"code": code}, "geometry": box(*bounds)}
            for code, bounds in BOXES.items()
        ]
    collection = {"type": "FeatureCollection", "features": features}
    (root / "regions.geojson").write_text(json.dumps(collection), encoding="utf-8")
    return root


async def targeted(
    runtime: Runtime,
    *,
    polygons: tuple[str, ...] = (),
    circles: tuple[str, ...] = (),
    geocodes: tuple[tuple[str, str], ...] = (),
    aliases: dict[str, dict[str, str]] | None = None,
) -> tuple[set[str], Target]:
    """The names of the responders a warning with these areas reaches."""
    area = areas_shape([Area("", geocodes, polygons, circles)])
    async with runtime.db.sessions() as session:
        target = await resolve_target(
            session, geocodes=geocodes, area=area, roles=[], aliases=aliases
        )
        names = {
            name
            for (name,) in (
                await session.execute(
                    select(Responder.name).where(Responder.id.in_(target.responders or [0]))
                )
            ).all()
        }
    return names, target


@pytest.fixture
async def directory(runtime: Runtime, tmp_path: Path) -> Runtime:
    async with runtime.db.transaction() as session:
        report = await import_directory(session, write_directory(tmp_path / "dir"))
    assert report.geometries == len(BOXES)
    return runtime


async def test_a_fully_covered_township_selects_its_subtree(directory: Runtime) -> None:
    names, _ = await targeted(directory, polygons=(cap_polygon(110.9, 20.9, 111.5, 22.1),))
    # 城关镇 is covered: all of it; the county is partly covered: itself only. 石门乡 only
    # shares the border at lon 111.5, which is not coverage.
    assert names == {"青溪县", "城关镇", "上坪村", "上坪一组", "上坪二组", "下洞村"}


async def test_a_partly_covered_village_selects_the_grids_that_intersect(
    directory: Runtime,
) -> None:
    names, target = await targeted(directory, polygons=(cap_polygon(111.05, 21.2, 111.1, 21.3),))
    assert names == {"青溪县", "城关镇", "上坪村", "上坪一组"}
    assert set(target.by_shape) == {
        "441799000000",
        "441799100000",
        "441799100001",
        "441799100001001",
    }


async def test_a_circle_selects_children_without_a_boundary(directory: Runtime) -> None:
    # 8 km around a point in the north of 石门乡: 南岭村 (south half) is clear of it, and
    # 北坑村 has no boundary on file, so it is warned rather than skipped.
    names, _ = await targeted(directory, circles=("21.75,111.75 8",))
    assert names == {"青溪县", "石门乡", "北坑村"}


async def test_a_zero_radius_circle_is_a_point(directory: Runtime) -> None:
    names, _ = await targeted(directory, circles=("21.25,111.3 0",))
    assert names == {"青溪县", "城关镇", "下洞村"}


async def test_the_target_is_the_union_of_geocodes_and_shapes(directory: Runtime) -> None:
    names, target = await targeted(
        directory,
        polygons=(cap_polygon(111.05, 21.2, 111.1, 21.3),),
        geocodes=(("行政区划代码", "441799200001"), ("行政区划代码", "441799999999")),
    )
    assert names == {"青溪县", "城关镇", "上坪村", "上坪一组", "南岭村"}
    assert target.unknown_codes == ["441799999999"]


async def test_a_shape_outside_every_region_selects_nobody(directory: Runtime) -> None:
    names, _ = await targeted(directory, polygons=(cap_polygon(100, 30, 101, 31),))
    assert names == set()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("441799", set(NAMES.values())),  # 6-digit county code
        ("441799000000", set(NAMES.values())),
        ("441799200", {"石门乡", "南岭村", "北坑村"}),  # 9-digit township code
        ("441799100002", {"下洞村"}),
        ("441799100001001", {"上坪一组"}),
    ],
)
async def test_statistical_code_forms(directory: Runtime, code: str, expected: set[str]) -> None:
    names, target = await targeted(directory, geocodes=(("行政区划代码", code),))
    assert names == expected
    assert target.unknown_codes == []


def test_code_forms() -> None:
    assert code_forms("441799") == ["441799", "441799000000"]
    assert code_forms("441799100") == ["441799100", "441799100000"]
    assert code_forms("441799100000") == ["441799100000", "441799100"]
    assert code_forms("441799000000") == ["441799000000", "441799"]
    assert code_forms("MNZ020") == ["MNZ020"]


async def test_geocode_aliases_translate_other_schemes(directory: Runtime) -> None:
    aliases = {"SAME": {"006109": "441799100002"}}
    names, target = await targeted(
        directory,
        geocodes=(("same", "006109"), ("SAME", "006003"), ("UGC", "MNZ020")),
        aliases=aliases,
    )
    assert names == {"下洞村"}
    assert target.unknown_codes == ["MNZ020", "SAME:006003"]


def test_circle_and_polygon_shapes() -> None:
    circle = circle_shape("21.75,111.75 10")
    west, south, east, north = circle.bounds
    assert north - south == pytest.approx(2 * 10 / 110.574, rel=0.01)
    assert east - west > north - south  # a degree of longitude is shorter at 21.75° N
    unclosed = polygon_shape("21,111 21,112 22,112")
    assert unclosed.is_valid and unclosed.area == pytest.approx(0.5)
    bowtie = polygon_shape("21,111 22,112 21,112 22,111 21,111")
    assert bowtie.is_valid and bowtie.area > 0


@pytest.mark.parametrize(
    ("features", "problem"),
    [
        ([{"type": "Feature", "properties": {}, "geometry": box(0, 0, 1, 1)}], "code: empty"),
        (
            [{"type": "Feature", "properties": {"code": "123456"}, "geometry": box(0, 0, 1, 1)}],
            "unknown region code",
        ),
        (
            [
                {
                    "type": "Feature",
                    "properties": {"code": "441799000000"},
                    "geometry": {"type": "Point", "coordinates": [111, 21]},
                }
            ],
            "must be a Polygon or MultiPolygon",
        ),
        (
            [
                {
                    "type": "Feature",
                    "properties": {"code": "441799000000"},
                    "geometry": box(21.0, 111.0, 22.0, 112.0),  # lat/lon swapped
                }
            ],
            "not longitude, latitude",
        ),
        (
            [
                {
                    "type": "Feature",
                    "properties": {"code": "441799000000"},
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [[[111, 21], [112, 22], [112, 21], [111, 22], [111, 21]]],
                    },
                }
            ],
            "invalid polygon",
        ),
        (
            [
                {"type": "Feature", "properties": {"code": "441799000000"}, "geometry": box(*b)}
                for b in ((111, 21, 112, 22), (111, 21, 112, 22))
            ],
            "repeats feature 1",
        ),
    ],
)
async def test_bad_geometries_import_nothing(
    runtime: Runtime, tmp_path: Path, features: list[dict[str, Any]], problem: str
) -> None:
    with pytest.raises(DirectoryImportError) as caught:
        async with runtime.db.transaction() as session:
            await import_directory(session, write_directory(tmp_path / "dir", features))
    assert problem in str(caught.value)
    assert "regions.geojson" in str(caught.value)
    async with runtime.db.sessions() as session:
        assert (await session.scalars(select(Region))).all() == []
