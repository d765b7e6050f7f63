"""Directory import (`jiaoying import DIR`) and the demo county, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from dispatcher.db import Database
from dispatcher.demo_county import COUNTY_CODE, TARGET_RESPONDERS, write_demo_directory
from dispatcher.directory import (
    DirectoryImportError,
    ImportReport,
    RowError,
    import_directory,
)
from dispatcher.models import Contact, Duty, Region, Responder, Speaker

Files = dict[str, list[list[str]]]
HEADERS = {
    "regions.csv": ["code", "name", "level", "parent_code"],
    "responders.csv": [
        "id",
        "name",
        "phone",
        "wecom_userid",
        "role",
        "region_codes",
        "backup_id",
        "supervisor_id",
    ],
    "speakers.csv": ["id", "name", "region_code", "provider", "address"],
}
COUNTY = "441788000000"
TOWN_A = "441788100000"
TOWN_B = "441788101000"
VILLAGE = "441788100201"
GRID_1 = "441788100201001"
GRID_2 = "441788100201002"


def small_directory() -> Files:
    """A small county; line numbers are list index + 2 (the header is line 1)."""
    return {
        "regions.csv": [
            [COUNTY, "溪口县", "county", ""],  # line 2
            [GRID_1, "上坪村第一网格", "grid", VILLAGE],  # line 3: before its parent
            [TOWN_A, "城关镇", "township", COUNTY],  # line 4
            [TOWN_B, "河口镇", "乡镇", COUNTY],  # line 5
            [VILLAGE, "上坪村", "village", TOWN_A],  # line 6
            [GRID_2, "上坪村第二网格", "网格", VILLAGE],  # line 7
        ],
        "responders.csv": [
            ["cl-1", "周建国", "13900000001", "", "county_leader", COUNTY, "", ""],
            [
                "td-1",
                "李春梅",
                "139 0000 0002; 13900000003",
                "u0001",
                "township_duty",
                TOWN_A,
                "",
                "cl-1",
            ],
            ["vs-1", "王德忠", "+86 139-0000-0004", "", "村（社区）干部", VILLAGE, "", "td-1"],
            ["gw-1", "陈秀英", "", "u0002", "网格员", f"{GRID_1};{GRID_2}", "vs-1", "vs-1"],
        ],
        "speakers.csv": [
            ["spk-1", "上坪村应急广播", VILLAGE, "simulated", f"spk-{VILLAGE}"],
        ],
    }


def write_files(directory: Path, files: Files, encoding: str = "utf-8") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(HEADERS[name])
        writer.writerows(rows)
        (directory / name).write_bytes(buffer.getvalue().encode(encoding))
    return directory


async def counts(session: AsyncSession) -> dict[str, int]:
    result = {}
    for model in (Region, Responder, Contact, Duty, Speaker):
        count = await session.scalar(select(func.count()).select_from(model))
        result[model.__name__] = count or 0
    return result


NOTHING = {"Region": 0, "Responder": 0, "Contact": 0, "Duty": 0, "Speaker": 0}


async def import_files(database: Database, directory: Path) -> ImportReport:
    async with database.transaction() as session:
        return await import_directory(session, directory)


async def regions_by_code(session: AsyncSession) -> dict[str, Region]:
    return {region.code: region for region in await session.scalars(select(Region))}


async def responders_by_id(session: AsyncSession) -> dict[str, Responder]:
    query = select(Responder).options(
        selectinload(Responder.contacts), selectinload(Responder.duties)
    )
    return {r.external_id: r for r in await session.scalars(query)}


# --- the demo county ---------------------------------------------------------------------


async def test_demo_directory_imports(database: Database, tmp_path: Path) -> None:
    write_demo_directory(tmp_path)
    report = await import_files(database, tmp_path)

    async with database.transaction() as session:
        regions = await regions_by_code(session)
        responders = await responders_by_id(session)
        speakers = list(await session.scalars(select(Speaker)))
        total = await counts(session)

    levels = Counter(region.level for region in regions.values())
    assert levels["county"] == 1
    assert levels["township"] == 5
    assert 15 <= levels["village"] <= 20
    assert 2 * levels["village"] <= levels["grid"] <= 3 * levels["village"]
    assert report == ImportReport(len(regions), len(responders), len(speakers), 0, len(regions))
    assert "200 responders" in report.summary()
    assert all(region.geometry for region in regions.values())  # boundaries for the map

    county = regions[COUNTY_CODE]
    assert county.name == "青溪县" and county.path == f"/{COUNTY_CODE}/" and county.depth == 0
    by_id = {region.id: region for region in regions.values()}
    for region in regions.values():
        parent = by_id.get(region.parent_id) if region.parent_id else None
        if region.level == "county":
            assert parent is None
            continue
        assert parent is not None
        assert region.path == f"{parent.path}{region.code}/"
        assert region.depth == parent.depth + 1
        prefix = {"township": 6, "village": 9, "grid": 12}[region.level]
        assert region.code.startswith(parent.code[:prefix])
        assert len(region.code) == (15 if region.level == "grid" else 12)
        if region.level == "grid":
            assert region.path.startswith(county.path) and region.depth == 3
            assert region.name.startswith(parent.name) and region.name.endswith("网格")

    assert len(responders) == TARGET_RESPONDERS
    roles = Counter(responder.role for responder in responders.values())
    assert roles["grid_worker"] == levels["grid"]
    assert roles["county_duty"] == 2 and roles["county_leader"] == 1
    assert roles["township_leader"] == roles["township_duty"] == 5
    assert roles["village_cadre"] >= 2 * levels["village"]
    assert total["Duty"] >= len(responders)
    assert all(responder.duties for responder in responders.values())
    assert len({responder.name for responder in responders.values()}) == len(responders)

    phones = [c.value for r in responders.values() for c in r.contacts if c.kind == "phone"]
    assert len(phones) == len(set(phones)) >= len(responders)
    assert all(phone.startswith("+861") and len(phone) == 14 for phone in phones)
    with_wecom = sum(1 for r in responders.values() if r.addresses("wecom"))
    assert 0.45 <= with_wecom / len(responders) <= 0.75

    ids = {responder.id: responder for responder in responders.values()}
    leader = responders[f"cl-{COUNTY_CODE}"]
    assert leader.supervisor_id is None
    for responder in responders.values():
        if responder is leader:
            continue
        assert responder.supervisor_id is not None and responder.backup_id is not None
        supervisor, backup = ids[responder.supervisor_id], ids[responder.backup_id]
        assert backup is not responder
        if responder.role == "grid_worker":
            grid = by_id[responder.duties[0].region_id]
            assert grid.parent_id is not None
            village = by_id[grid.parent_id]
            assert supervisor.external_id == f"vs-{village.code}"
            assert backup.role == "grid_worker" or backup.external_id == f"vd-{village.code}"
        elif responder.external_id.startswith(("vs-", "vd-")):
            assert supervisor.role == "township_leader"
            assert backup.external_id[3:] == responder.external_id[3:]
        elif responder.role in ("township_leader", "township_duty"):
            assert supervisor.role == "county_duty"
            assert backup.duties[0].region_id == responder.duties[0].region_id
        elif responder.role == "county_duty":
            assert supervisor is leader

    villages = {region.id for region in regions.values() if region.level == "village"}
    assert {speaker.region_id for speaker in speakers} == villages
    for speaker in speakers:
        assert speaker.provider == "simulated"
        assert speaker.address == f"spk-{by_id[speaker.region_id].code}"
        assert speaker.name == f"{by_id[speaker.region_id].name}应急广播"


def test_demo_directory_is_deterministic(tmp_path: Path) -> None:
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        write_demo_directory(tmp_path / name, seed=seed)
    for file in HEADERS:
        first = (tmp_path / "a" / file).read_bytes()
        assert first == (tmp_path / "b" / file).read_bytes()
        assert first.decode("utf-8").splitlines()[0] == ",".join(HEADERS[file])
    assert (tmp_path / "a/responders.csv").read_bytes() != (
        tmp_path / "c/responders.csv"
    ).read_bytes()


# --- a small directory, upserts and moves --------------------------------------------------


async def test_small_directory_imports(database: Database, tmp_path: Path) -> None:
    report = await import_files(database, write_files(tmp_path, small_directory()))
    assert report == ImportReport(regions=6, responders=4, speakers=1)

    async with database.transaction() as session:
        assert await counts(session) == {
            "Region": 6,
            "Responder": 4,
            "Contact": 6,
            "Duty": 5,
            "Speaker": 1,
        }
        regions = await regions_by_code(session)
        responders = await responders_by_id(session)
        speaker = await session.scalar(select(Speaker))

    assert regions[TOWN_B].level == "township" and regions[GRID_2].level == "grid"
    assert regions[GRID_1].path == f"/{COUNTY}/{TOWN_A}/{VILLAGE}/{GRID_1}/"
    assert regions[GRID_1].depth == 3 and regions[GRID_1].parent_id == regions[VILLAGE].id
    duty = responders["td-1"]
    assert [c.position for c in duty.contacts if c.kind == "phone"] == [0, 1]
    assert duty.addresses("phone") == ["+8613900000002", "+8613900000003"]
    assert duty.addresses("wecom") == ["u0001"]
    assert responders["vs-1"].role == "village_cadre"
    assert responders["vs-1"].addresses("phone") == ["+8613900000004"]
    worker = responders["gw-1"]
    assert worker.role == "grid_worker" and worker.addresses("phone") == []
    assert {d.region_id for d in worker.duties} == {regions[GRID_1].id, regions[GRID_2].id}
    assert worker.backup_id == worker.supervisor_id == responders["vs-1"].id
    assert responders["td-1"].supervisor_id == responders["cl-1"].id
    assert responders["cl-1"].supervisor_id is None and responders["cl-1"].backup_id is None
    assert speaker is not None and speaker.region_id == regions[VILLAGE].id


async def test_reimport_updates_instead_of_duplicating(database: Database, tmp_path: Path) -> None:
    files = small_directory()
    await import_files(database, write_files(tmp_path / "first", files))

    files["regions.csv"][4][1] = "上坪社区"
    files["responders.csv"][1][2:4] = ["13900000009", ""]  # td-1: one new phone, no WeCom
    files["responders.csv"][3][5:7] = [GRID_1, ""]  # gw-1: one grid, no backup
    files["responders.csv"][3][4] = "village_cadre"
    files["speakers.csv"][0][1] = "上坪社区应急广播"
    report = await import_files(database, write_files(tmp_path / "second", files))
    assert report == ImportReport(regions=6, responders=4, speakers=1)

    async with database.transaction() as session:
        assert await counts(session) == {
            "Region": 6,
            "Responder": 4,
            "Contact": 4,
            "Duty": 4,
            "Speaker": 1,
        }
        regions = await regions_by_code(session)
        responders = await responders_by_id(session)
        speaker = await session.scalar(select(Speaker))
    assert regions[VILLAGE].name == "上坪社区"
    assert responders["td-1"].addresses("phone") == ["+8613900000009"]
    assert responders["td-1"].addresses("wecom") == []
    worker = responders["gw-1"]
    assert [d.region_id for d in worker.duties] == [regions[GRID_1].id]
    assert worker.role == "village_cadre" and worker.backup_id is None
    assert worker.supervisor_id == responders["vs-1"].id
    assert speaker is not None and speaker.name == "上坪社区应急广播"


async def test_a_number_may_move_between_responders_in_one_import(
    database: Database, tmp_path: Path
) -> None:
    files = small_directory()
    await import_files(database, write_files(tmp_path / "first", files))
    moved = {
        "responders.csv": [
            ["vs-1", "王德忠", "13900000005", "", "village_cadre", VILLAGE, "", ""],
            ["vd-1", "赵玉兰", "13900000004", "", "village_cadre", VILLAGE, "vs-1", ""],
        ]
    }
    assert (await import_files(database, write_files(tmp_path / "second", moved))).responders == 2
    async with database.transaction() as session:
        responders = await responders_by_id(session)
    assert responders["vd-1"].addresses("phone") == ["+8613900000004"]
    assert responders["vs-1"].addresses("phone") == ["+8613900000005"]
    assert responders["vs-1"].supervisor_id is None  # the file is the truth for its rows
    assert responders["gw-1"].supervisor_id == responders["vs-1"].id  # untouched row


async def test_moving_a_region_moves_its_descendants(database: Database, tmp_path: Path) -> None:
    await import_files(database, write_files(tmp_path / "first", small_directory()))
    move_village = {"regions.csv": [[VILLAGE, "上坪村", "village", TOWN_B]]}
    assert (
        await import_files(database, write_files(tmp_path / "second", move_village))
    ).regions == 1

    async with database.transaction() as session:
        regions = await regions_by_code(session)
    village_path = f"/{COUNTY}/{TOWN_B}/{VILLAGE}/"
    assert (
        regions[VILLAGE].path == village_path and regions[VILLAGE].parent_id == regions[TOWN_B].id
    )
    for grid in (GRID_1, GRID_2):
        assert regions[grid].path == f"{village_path}{grid}/" and regions[grid].depth == 3

    nest_grid = {"regions.csv": [[GRID_2, "上坪村第二网格", "grid", GRID_1]]}
    await import_files(database, write_files(tmp_path / "third", nest_grid))
    async with database.transaction() as session:
        regions = await regions_by_code(session)
        assert await counts(session) == {
            "Region": 6,
            "Responder": 4,
            "Contact": 6,
            "Duty": 5,
            "Speaker": 1,
        }
    assert regions[GRID_2].path == f"{village_path}{GRID_1}/{GRID_2}/"
    assert regions[GRID_2].depth == 4


async def test_a_move_under_an_own_descendant_is_refused(
    database: Database, tmp_path: Path
) -> None:
    files = small_directory()
    files["regions.csv"][5][3] = GRID_1  # grid 2 inside grid 1
    await import_files(database, write_files(tmp_path / "first", files))
    cycle = {"regions.csv": [[GRID_1, "上坪村第一网格", "grid", GRID_2]]}
    with pytest.raises(DirectoryImportError) as caught:
        await import_files(database, write_files(tmp_path / "second", cycle))
    assert [str(error) for error in caught.value.errors] == [
        f"regions.csv:2: parent_code: {GRID_1} would be its own ancestor"
    ]
    demote = {"regions.csv": [[VILLAGE, "上坪村", "grid", TOWN_A]]}
    with pytest.raises(DirectoryImportError) as caught:
        await import_files(database, write_files(tmp_path / "third", demote))
    assert "parent_code: 441788100000 is a township; a grid goes under a village or grid" in str(
        caught.value
    )


# --- bad rows ------------------------------------------------------------------------------


def _set(file: str, row: int, column: int, value: str) -> Callable[[Files], None]:
    def change(files: Files) -> None:
        files[file][row][column] = value

    return change


def _append(file: str, row: list[str]) -> Callable[[Files], None]:
    def change(files: Files) -> None:
        files[file].append(row)

    return change


BAD_ROWS: dict[str, tuple[Callable[[Files], None], str, int, str]] = {
    "unknown level": (
        _set("regions.csv", 2, 2, "city"),
        "regions.csv",
        4,
        "level: unknown level 'city'",
    ),
    "unknown parent": (
        _set("regions.csv", 4, 3, "441788199000"),
        "regions.csv",
        6,
        "parent_code: unknown region code 441788199000",
    ),
    "parent of a lower level": (
        _set("regions.csv", 3, 3, VILLAGE),
        "regions.csv",
        5,
        f"parent_code: {VILLAGE} is a village; a township goes under a county",
    ),
    "township without parent": (
        _set("regions.csv", 3, 3, ""),
        "regions.csv",
        5,
        "parent_code: empty; a township needs a parent region",
    ),
    "bad region code": (
        _set("regions.csv", 0, 0, "44-17"),
        "regions.csv",
        2,
        "code: '44-17' is not a region code",
    ),
    "duplicate region code": (
        _append("regions.csv", [TOWN_B, "又一个镇", "township", COUNTY]),
        "regions.csv",
        8,
        f"code: duplicate region code {TOWN_B} (first on line 5)",
    ),
    "county with a parent": (
        _set("regions.csv", 0, 3, GRID_2),
        "regions.csv",
        2,
        "parent_code: a county has no parent region",
    ),
    "bad phone": (
        _set("responders.csv", 2, 2, "13900000004;12345"),
        "responders.csv",
        4,
        "phone: '12345' is not a valid phone number",
    ),
    "no way to reach": (
        _set("responders.csv", 3, 3, ""),
        "responders.csv",
        5,
        "phone, wecom_userid: both empty",
    ),
    "unknown role": (
        _set("responders.csv", 0, 4, "mayor"),
        "responders.csv",
        2,
        "role: unknown role 'mayor'",
    ),
    "unknown region code": (
        _set("responders.csv", 3, 5, f"{GRID_1};441799999999"),
        "responders.csv",
        5,
        "region_codes: unknown region code 441799999999",
    ),
    "no region code": (
        _set("responders.csv", 0, 5, ""),
        "responders.csv",
        2,
        "region_codes: empty",
    ),
    "unknown backup id": (
        _set("responders.csv", 3, 6, "nobody"),
        "responders.csv",
        5,
        "backup_id: unknown responder id nobody",
    ),
    "self supervisor": (
        _set("responders.csv", 2, 7, "vs-1"),
        "responders.csv",
        4,
        "supervisor_id: a responder cannot be their own supervisor",
    ),
    "duplicate responder id": (
        _append(
            "responders.csv", ["td-1", "张三", "13900000008", "", "township_duty", TOWN_B, "", ""]
        ),
        "responders.csv",
        6,
        "id: duplicate id td-1 (first on line 3)",
    ),
    "duplicate phone across responders": (
        _append(
            "responders.csv", ["td-2", "张三", "13900000003", "", "township_duty", TOWN_B, "", ""]
        ),
        "responders.csv",
        6,
        "phone: +8613900000003 is also given for td-1 on line 3",
    ),
    "duplicate wecom id across responders": (
        _append("responders.csv", ["td-2", "张三", "", "u0001", "township_duty", TOWN_B, "", ""]),
        "responders.csv",
        6,
        "wecom_userid: u0001 is also given for td-1 on line 3",
    ),
    "speaker in unknown region": (
        _set("speakers.csv", 0, 2, "441788100299"),
        "speakers.csv",
        2,
        "region_code: unknown region code 441788100299",
    ),
    "speaker without provider": (
        _set("speakers.csv", 0, 3, ""),
        "speakers.csv",
        2,
        "provider: empty",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
async def test_a_bad_row_is_reported_and_nothing_is_imported(
    database: Database, tmp_path: Path, case: str
) -> None:
    change, file, line, message = BAD_ROWS[case]
    files = small_directory()
    change(files)
    directory = write_files(tmp_path, files)

    async with database.transaction() as session:
        with pytest.raises(DirectoryImportError) as caught:
            await import_directory(session, directory)
        assert await counts(session) == NOTHING  # nothing written, not even flushed
    errors = caught.value.errors
    assert any(
        e.file == file and e.line == line and e.message.startswith(message) for e in errors
    ), errors
    assert f"{file}:{line}: {message}" in str(caught.value)
    async with database.transaction() as session:
        assert await counts(session) == NOTHING


async def test_every_bad_row_of_every_file_is_reported(database: Database, tmp_path: Path) -> None:
    files = small_directory()
    files["regions.csv"][1][3] = GRID_2  # grid 1 inside grid 2 ...
    files["regions.csv"][5][3] = GRID_1  # ... and grid 2 inside grid 1
    files["responders.csv"][0][2] = "110"
    files["responders.csv"][1][6] = "td-1"
    files["speakers.csv"].append(["spk-1", "重复", VILLAGE, "simulated", "spk-x"])
    directory = write_files(tmp_path, files)
    # An empty line after the header: skipped, but still counted.
    responders = directory / "responders.csv"
    responders.write_bytes(responders.read_bytes().replace(b"\r\n", b"\r\n\r\n", 1))

    with pytest.raises(DirectoryImportError) as caught:
        await import_files(database, directory)
    assert [str(error) for error in caught.value.errors] == [
        f"regions.csv:3: parent_code: {GRID_1} would be its own ancestor",
        f"regions.csv:7: parent_code: {GRID_2} would be its own ancestor",
        "responders.csv:3: phone: '110' is not a valid phone number",
        "responders.csv:4: backup_id: a responder cannot be their own backup",
        "speakers.csv:3: id: duplicate id spk-1 (first on line 2)",
    ]
    assert str(caught.value).splitlines() == [str(error) for error in caught.value.errors]
    async with database.transaction() as session:
        assert await counts(session) == NOTHING


async def test_a_missing_header_column_is_reported(database: Database, tmp_path: Path) -> None:
    directory = write_files(tmp_path, small_directory())
    (directory / "regions.csv").write_text(
        "code,name,parent\n441788000000,溪口县,\n", encoding="utf-8"
    )
    with pytest.raises(DirectoryImportError) as caught:
        await import_files(database, directory)
    assert caught.value.errors == [
        RowError("regions.csv", 1, "header: missing column(s) level, parent_code")
    ]
    async with database.transaction() as session:
        assert await counts(session) == NOTHING


async def test_a_phone_of_another_responder_in_the_database_is_refused(
    database: Database, tmp_path: Path
) -> None:
    await import_files(database, write_files(tmp_path / "first", small_directory()))
    newcomer = {
        "responders.csv": [
            ["vd-1", "赵玉兰", "13900000004", "", "village_cadre", VILLAGE, "vs-1", "td-1"],
        ]
    }
    with pytest.raises(DirectoryImportError) as caught:
        await import_files(database, write_files(tmp_path / "second", newcomer))
    assert str(caught.value) == (
        "responders.csv:2: phone: +8613900000004 already belongs to responder vs-1"
    )
    async with database.transaction() as session:
        assert (await counts(session))["Responder"] == 4


async def test_an_empty_directory_is_an_error(database: Database, tmp_path: Path) -> None:
    with pytest.raises(DirectoryImportError, match=r"none of regions\.csv"):
        await import_files(database, tmp_path)


# --- encodings -------------------------------------------------------------------------------


async def test_gbk_regions_with_chinese_labels_import(database: Database, tmp_path: Path) -> None:
    files = {
        "regions.csv": [
            [COUNTY, "溪口县", "区县", ""],
            [TOWN_A, "城关镇", "镇", COUNTY],
            [TOWN_B, "白沙街道", "街道", COUNTY],
            [VILLAGE, "新民社区", "社区", TOWN_B],
            [GRID_1, "新民社区第一网格", "网格", VILLAGE],
        ]
    }
    directory = write_files(tmp_path, files, encoding="gbk")
    with pytest.raises(UnicodeDecodeError):
        (directory / "regions.csv").read_bytes().decode("utf-8")

    assert (await import_files(database, directory)).regions == 5
    async with database.transaction() as session:
        regions = await regions_by_code(session)
    assert {code: (r.name, r.level) for code, r in regions.items()} == {
        COUNTY: ("溪口县", "county"),
        TOWN_A: ("城关镇", "township"),
        TOWN_B: ("白沙街道", "township"),
        VILLAGE: ("新民社区", "village"),
        GRID_1: ("新民社区第一网格", "grid"),
    }
    assert regions[GRID_1].path == f"/{COUNTY}/{TOWN_B}/{VILLAGE}/{GRID_1}/"


async def test_utf8_with_bom_imports(database: Database, tmp_path: Path) -> None:
    directory = write_files(tmp_path, small_directory(), encoding="utf-8-sig")
    assert (directory / "regions.csv").read_bytes().startswith(b"\xef\xbb\xbfcode,")
    report = await import_files(database, directory)
    assert report == ImportReport(regions=6, responders=4, speakers=1)
    async with database.transaction() as session:
        regions = await regions_by_code(session)
    assert regions[COUNTY].name == "溪口县"
