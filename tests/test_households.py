"""`households.csv` in the directory import: checked with everything else, upserted by id."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from dispatcher.db import Database
from dispatcher.directory import DirectoryImportError, import_directory
from dispatcher.models import Household, Region
from tests.scenario import REGIONS

GOOD = """id,region_code,address,people,flags
H1,441799100001,上坪村1号,1,独居老人
H2,441799100001,上坪村2号,,
H3,44179910000201,下洞一组5号,2,独居老人；行动不便
"""


def _write(directory: Path, households: str, regions: str = REGIONS) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "regions.csv").write_text(regions, encoding="utf-8")
    (directory / "households.csv").write_text(households, encoding="utf-8")
    return directory


async def test_households_import_and_update(database: Database, tmp_path: Path) -> None:
    async with database.transaction() as session:
        report = await import_directory(session, _write(tmp_path / "d", GOOD))
    assert report.households == 3 and "3 households" in report.summary()
    changed = GOOD.replace("上坪村2号,,", "上坪村2号,5,孕妇")
    async with database.transaction() as session:
        await import_directory(session, _write(tmp_path / "d", changed))
    async with database.sessions() as session:
        rows = (
            await session.execute(
                select(Household.external_id, Region.code, Household.people, Household.flags)
                .join(Region, Region.id == Household.region_id)
                .order_by(Household.external_id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("H1", "441799100001", 1, ["独居老人"]),
        ("H2", "441799100001", 5, ["孕妇"]),
        ("H3", "44179910000201", 2, ["独居老人", "行动不便"]),
    ]


async def test_bad_household_rows_are_all_reported_and_nothing_written(
    database: Database, tmp_path: Path
) -> None:
    bad = """id,region_code,address,people,flags
H1,441799100001,上坪村1号,many,
H1,441799100001,上坪村1号,1,
,999999999999,,1,
"""
    with pytest.raises(DirectoryImportError) as error:
        async with database.transaction() as session:
            await import_directory(session, _write(tmp_path / "d", bad))
    text = str(error.value)
    assert "households.csv:2: people: 'many'" in text
    assert "households.csv:3: id: duplicate id H1" in text
    assert "households.csv:4: id: empty" in text
    assert "households.csv:4: region_code: unknown region code 999999999999" in text
    assert "households.csv:4: address: empty" in text
    async with database.sessions() as session:
        assert list(await session.scalars(select(Region))) == []
