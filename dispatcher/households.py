"""`households.csv`: the households a door-knock round visits, part of the directory import.

Columns `id,region_code,address,people,flags`: `people` is how many live there (default
1), `flags` the reasons to check on them first, separated by `;` or `、` (e.g.
`独居老人;行动不便`). Rows are checked with the rest of the directory (nothing is written
if any row is bad) and upserted by `id`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.directory_rows import HOUSEHOLDS_FILE, RowError, Table
from dispatcher.models import Household, Region

__all__ = ["HOUSEHOLDS_FILE", "HouseholdRow", "check_households", "write_households"]

_FLAG_SEPARATOR = re.compile(r"[;；、,，]")
MAX_PEOPLE_PER_HOUSEHOLD = 200
MAX_FLAGS = 10


@dataclass(frozen=True)
class HouseholdRow:
    line: int
    external_id: str
    region_code: str
    address: str
    people: int
    flags: tuple[str, ...]


def check_households(
    table: Table, region_codes: set[str] | None, errors: list[RowError]
) -> list[HouseholdRow]:
    rows: list[HouseholdRow] = []
    first_line: dict[str, int] = {}
    for line, cells in table.rows:
        before = len(errors)

        def report(message: str, line: int = line) -> None:
            errors.append(RowError(table.file, line, message))

        external_id = cells["id"]
        if not external_id:
            report("id: empty")
        elif len(external_id) > 64:
            report("id: longer than 64 characters")
        elif external_id in first_line:
            report(f"id: duplicate id {external_id} (first on line {first_line[external_id]})")
            continue
        else:
            first_line[external_id] = line
        region_code = cells["region_code"]
        if not region_code:
            report("region_code: empty")
        elif region_codes is not None and region_code not in region_codes:
            report(f"region_code: unknown region code {region_code}")
        address = cells["address"]
        if not address:
            report("address: empty")
        elif len(address) > 200:
            report("address: longer than 200 characters")
        people = 1
        if cells["people"]:
            raw = cells["people"]
            if not raw.isdigit() or not 0 <= int(raw) <= MAX_PEOPLE_PER_HOUSEHOLD:
                report(f"people: {raw!r} is not a number from 0 to {MAX_PEOPLE_PER_HOUSEHOLD}")
            else:
                people = int(raw)
        flags = [f.strip() for f in _FLAG_SEPARATOR.split(cells["flags"]) if f.strip()]
        flags = list(dict.fromkeys(flags))
        if len(flags) > MAX_FLAGS or any(len(flag) > 20 for flag in flags):
            report(f"flags: at most {MAX_FLAGS} flags of up to 20 characters each")
        if len(errors) == before:
            rows.append(HouseholdRow(line, external_id, region_code, address, people, tuple(flags)))
    return rows


async def write_households(
    session: AsyncSession, rows: list[HouseholdRow], regions: dict[str, Region]
) -> None:
    existing: dict[str, Household] = {}
    ids = [row.external_id for row in rows]
    for start in range(0, len(ids), 500):
        found = await session.scalars(
            select(Household).where(Household.external_id.in_(ids[start : start + 500]))
        )
        existing.update((household.external_id, household) for household in found)
    for row in rows:
        household = existing.get(row.external_id)
        if household is None:
            household = existing[row.external_id] = Household(external_id=row.external_id)
            session.add(household)
        household.region_id = regions[row.region_code].id
        household.address = row.address
        household.people = row.people
        household.flags = list(row.flags)
