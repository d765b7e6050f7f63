"""`jiaoying import DIR`: load the directory (regions, responders, speakers) from CSV files.

A directory holds any of `regions.csv` (`code,name,level,parent_code`), `responders.csv`
(`id,name,phone,wecom_userid,role,region_codes,backup_id,supervisor_id`; several phones or
region codes separated by `;`), `speakers.csv` (`id,name,region_code,provider,address`)
and `households.csv` (`id,region_code,address,people,flags`; see `dispatcher.households`),
in UTF-8 (with or without BOM) or GB18030/GBK as Excel saves them in China, and
`regions.geojson`, the regions' boundaries (see `dispatcher.directory_geometry`).

Every row of every file is checked (see `dispatcher.directory_rows`) before anything is
written. If any row is bad, `DirectoryImportError` lists every problem with file, line and
column, and nothing is written. Otherwise rows are upserted by code / external id: regions
get their materialised paths (and moved regions take their descendants along), responders
get their contacts and duties replaced, then their backups and supervisors linked. Rows
absent from the files are left as they are. The caller owns the transaction.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from dispatcher.directory_geometry import GEOMETRY_FILE, RegionGeometry, read_geometries
from dispatcher.directory_rows import (
    COLUMNS,
    HOUSEHOLDS_FILE,
    REGIONS_FILE,
    Known,
    KnownRegion,
    Plan,
    ResponderRow,
    RowError,
    SpeakerRow,
    Table,
    check_directory,
    sort_errors,
)
from dispatcher.households import HouseholdRow, check_households, write_households
from dispatcher.models import Contact, Duty, Region, Responder, Speaker

__all__ = ["DirectoryImportError", "ImportReport", "RowError", "import_directory"]

ENCODINGS = ("utf-8-sig", "gb18030")  # Excel in China saves GBK, a subset of GB18030
_CHUNK = 500  # ids per IN (...) list, well under every back end's parameter limit
_T = TypeVar("_T")


class DirectoryImportError(Exception):
    """The directory has bad rows; nothing was imported. `errors` lists every one."""

    def __init__(self, errors: Iterable[RowError]) -> None:
        self.errors: list[RowError] = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


@dataclass(frozen=True)
class ImportReport:
    """How many rows of each file were imported (added or updated)."""

    regions: int
    responders: int
    speakers: int
    households: int = 0
    geometries: int = 0

    def summary(self) -> str:
        text = (
            f"Imported {self.regions} regions, {self.responders} responders "
            f"and {self.speakers} speakers"
        )
        text += f", {self.households} households" if self.households else ""
        text += f", {self.geometries} region boundaries" if self.geometries else ""
        return text + "."


async def import_directory(session: AsyncSession, directory: Path) -> ImportReport:
    """Validate and upsert the directory's CSV files; raise before writing if any row is bad."""
    tables, errors = read_tables(directory)
    known, regions = await _load_known(session)
    plan, row_errors = check_directory(tables, known)
    errors.extend(row_errors)
    households: list[HouseholdRow] = []
    region_codes = set(known.regions) | {row.code for row in plan.regions}
    if (household_table := tables.get(HOUSEHOLDS_FILE)) is not None:
        unreadable_regions = REGIONS_FILE in tables and tables[REGIONS_FILE] is None
        households = check_households(
            household_table, None if unreadable_regions else region_codes, errors
        )
    geometries, geometry_errors = read_geometries(directory, region_codes)
    errors.extend(geometry_errors)
    if errors:
        raise DirectoryImportError(sort_errors(errors))
    await _write_regions(session, plan, regions)
    _write_geometries(geometries, regions)
    responders = await _write_responders(session, plan.responders, regions)
    await _link_responders(session, plan.responders, responders)
    await _write_speakers(session, plan.speakers, regions)
    await write_households(session, households, regions)
    await session.flush()
    return ImportReport(
        len(plan.regions),
        len(plan.responders),
        len(plan.speakers),
        len(households),
        len(geometries),
    )


def read_tables(directory: Path) -> tuple[dict[str, Table | None], list[RowError]]:
    """The files present, by name (None when unreadable), and the problems found reading them."""
    if not directory.is_dir():
        return {}, [RowError(str(directory), 0, "not a directory")]
    tables: dict[str, Table | None] = {}
    errors: list[RowError] = []
    for name in COLUMNS:
        path = directory / name
        if not path.is_file():
            continue
        text = decode_text(path.read_bytes())
        if text is None:
            tables[name] = None
            errors.append(RowError(name, 0, "neither UTF-8 nor GB18030 text"))
            continue
        tables[name], table_errors = parse_table(name, text)
        errors.extend(table_errors)
    if not tables and not (directory / GEOMETRY_FILE).is_file():
        expected = ", ".join((*COLUMNS, GEOMETRY_FILE))
        errors.append(RowError(str(directory), 0, f"none of {expected} found"))
    return tables, errors


def decode_text(data: bytes) -> str | None:
    """The file's text in the first encoding that fits, or None."""
    for encoding in ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def parse_table(file: str, text: str) -> tuple[Table | None, list[RowError]]:
    """Split CSV text into stripped cells by column, skipping empty lines; check the header.

    The table is None when it cannot be used at all (no header, missing columns).
    """
    columns = COLUMNS[file]
    reader = csv.reader(io.StringIO(text, newline=""))
    table = Table(file)
    errors: list[RowError] = []
    header: list[str] | None = None
    try:
        previous_end = 0
        for raw_cells in reader:
            line, previous_end = previous_end + 1, reader.line_num
            cells = [cell.strip() for cell in raw_cells]
            if not any(cells):
                continue
            if header is None:
                header = [cell.lstrip("\ufeff").lower() for cell in cells]
                missing = [column for column in columns if column not in header]
                if missing:
                    message = f"header: missing column(s) {', '.join(missing)}"
                    return None, [RowError(file, line, message)]
                continue
            if len(cells) > len(header) and any(cells[len(header) :]):
                message = f"row has {len(cells)} cells but the header names {len(header)}"
                errors.append(RowError(file, line, message))
                continue
            by_name = dict(zip(header, cells, strict=False))
            table.rows.append((line, {column: by_name.get(column, "") for column in columns}))
    except csv.Error as exc:
        return None, [RowError(file, reader.line_num, f"not readable as CSV: {exc}")]
    if header is None:
        return None, [RowError(file, 0, f"empty file: no header ({', '.join(columns)})")]
    return table, errors


async def _load_known(session: AsyncSession) -> tuple[Known, dict[str, Region]]:
    regions = {region.code: region for region in await session.scalars(select(Region))}
    codes_by_id = {region.id: code for code, region in regions.items()}
    known = Known()
    for code, region in regions.items():
        parent_code = codes_by_id.get(region.parent_id) if region.parent_id else None
        known.regions[code] = KnownRegion(code, region.level, parent_code)
    known.responders = set(await session.scalars(select(Responder.external_id)))
    owners = await session.execute(
        select(Contact.kind, Contact.value, Responder.external_id).join(Contact.responder)
    )
    known.contact_owners = {(kind, value): owner for kind, value, owner in owners}
    return known, regions


async def _write_regions(session: AsyncSession, plan: Plan, regions: dict[str, Region]) -> None:
    """Upsert the file's regions parents first, then bring every changed path up to date."""
    for row in sorted(plan.regions, key=lambda row: plan.paths[row.code][1]):
        region = regions.get(row.code)
        if region is None:
            region = regions[row.code] = Region(code=row.code)
            session.add(region)
        region.name = row.name
        region.level = row.level
        region.parent = regions[row.parent_code] if row.parent_code else None
    for code, (path, depth) in plan.paths.items():
        region = regions[code]
        if region.path != path or region.depth != depth:
            region.path, region.depth = path, depth
    await session.flush()


def _write_geometries(geometries: list[RegionGeometry], regions: dict[str, Region]) -> None:
    for item in geometries:
        regions[item.code].geometry = item.geometry


async def _write_responders(
    session: AsyncSession, rows: list[ResponderRow], regions: dict[str, Region]
) -> dict[str, Responder]:
    """First pass: upsert responders with fresh contacts and duties, without links."""
    existing: dict[str, Responder] = {}
    for chunk in _chunks([row.external_id for row in rows]):
        found = await session.scalars(
            select(Responder)
            .where(Responder.external_id.in_(chunk))
            .options(selectinload(Responder.contacts), selectinload(Responder.duties))
        )
        existing.update((responder.external_id, responder) for responder in found)
    # Old contacts and duties go first, so a number or region kept by the file does not
    # collide with itself on the unique constraints.
    for responder in existing.values():
        responder.contacts.clear()
        responder.duties.clear()
    await session.flush()
    for row in rows:
        if row.external_id in existing:
            responder = existing[row.external_id]
        else:
            responder = existing[row.external_id] = Responder(
                external_id=row.external_id, contacts=[], duties=[]
            )
            session.add(responder)
        responder.name = row.name
        responder.role = row.role
        responder.active = True
        responder.contacts.extend(
            Contact(kind="phone", value=phone, position=position)
            for position, phone in enumerate(row.phones)
        )
        if row.wecom_userid:
            responder.contacts.append(Contact(kind="wecom", value=row.wecom_userid, position=0))
        responder.duties.extend(Duty(region_id=regions[code].id) for code in row.region_codes)
    await session.flush()
    return existing


async def _link_responders(
    session: AsyncSession, rows: list[ResponderRow], responders: dict[str, Responder]
) -> None:
    """Second pass: backups and supervisors, now that every responder has an id."""
    ids = {external_id: responder.id for external_id, responder in responders.items()}
    wanted = {link for row in rows for link in (row.backup_id, row.supervisor_id) if link}
    for chunk in _chunks(sorted(wanted - ids.keys())):
        found = await session.execute(
            select(Responder.external_id, Responder.id).where(Responder.external_id.in_(chunk))
        )
        ids.update((external_id, id_) for external_id, id_ in found)
    for row in rows:
        responder = responders[row.external_id]
        responder.backup_id = ids[row.backup_id] if row.backup_id else None
        responder.supervisor_id = ids[row.supervisor_id] if row.supervisor_id else None


async def _write_speakers(
    session: AsyncSession, rows: list[SpeakerRow], regions: dict[str, Region]
) -> None:
    existing: dict[str, Speaker] = {}
    for chunk in _chunks([row.external_id for row in rows]):
        found = await session.scalars(select(Speaker).where(Speaker.external_id.in_(chunk)))
        existing.update((speaker.external_id, speaker) for speaker in found)
    for row in rows:
        speaker = existing.get(row.external_id)
        if speaker is None:
            speaker = existing[row.external_id] = Speaker(external_id=row.external_id)
            session.add(speaker)
        speaker.name = row.name
        speaker.region_id = regions[row.region_code].id
        speaker.provider = row.provider
        speaker.address = row.address


def _chunks(items: list[_T]) -> Iterator[list[_T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
