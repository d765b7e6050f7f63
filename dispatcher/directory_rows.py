"""Row checks for the directory import: CSV text in, validated rows or row errors out.

No database access here. `dispatcher.directory` reads the files, loads what the database
already holds into a `Known` snapshot and calls `check_directory`, which validates every
row of every file against the files and the snapshot together and returns a `Plan` (the
rows to write, with the path and depth of every region) and the list of `RowError`s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dispatcher.phones import InvalidPhone, normalize_phone
from dispatcher.vocabulary import REGION_LEVELS, ROLES

REGIONS_FILE = "regions.csv"
RESPONDERS_FILE = "responders.csv"
SPEAKERS_FILE = "speakers.csv"
HOUSEHOLDS_FILE = "households.csv"  # checked and written by dispatcher.households
COLUMNS: dict[str, tuple[str, ...]] = {
    REGIONS_FILE: ("code", "name", "level", "parent_code"),
    RESPONDERS_FILE: (
        "id",
        "name",
        "phone",
        "wecom_userid",
        "role",
        "region_codes",
        "backup_id",
        "supervisor_id",
    ),
    SPEAKERS_FILE: ("id", "name", "region_code", "provider", "address"),
    HOUSEHOLDS_FILE: ("id", "region_code", "address", "people", "flags"),
}

_REGION_CODE = re.compile(r"\d{6,20}")
_WECOM_ID = re.compile(r"[^\s;；]{1,64}")
_LIST_SEPARATOR = re.compile(r"[;；]")
_MAX_PATH = 400
_MAX_NAME = 100
_MAX_ID = 64

# Which levels a region of each level may sit under (county > township > village > grid).
ALLOWED_PARENTS: dict[str, tuple[str, ...]] = {
    "county": (),
    "township": ("county",),
    "village": ("county", "township"),
    "grid": ("village", "grid"),
}
LEVEL_ALIASES: dict[str, str] = {
    **{key: key for key in REGION_LEVELS},
    **{label: key for key, label in REGION_LEVELS.items()},
    "区县": "county",
    "县": "county",
    "区": "county",
    "县级市": "county",
    "乡镇": "township",
    "乡": "township",
    "镇": "township",
    "街道": "township",
    "村": "village",
    "社区": "village",
    "网格": "grid",
}
ROLE_ALIASES: dict[str, str] = {
    **{key: key for key in ROLES},
    **{label: key for key, label in ROLES.items()},
    **{label.replace("（", "(").replace("）", ")"): key for key, label in ROLES.items()},
    "村干部": "village_cadre",
    "社区干部": "village_cadre",
    "乡镇领导": "township_leader",
    "街道领导": "township_leader",
    "街道值班员": "township_duty",
}


@dataclass(frozen=True)
class RowError:
    """One problem in one row (line 1 is the header; line 0 means the whole file)."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        if self.line <= 0:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class Table:
    """The data rows of one CSV file: (line number, cells by column name)."""

    file: str
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)


@dataclass(frozen=True)
class KnownRegion:
    code: str
    level: str
    parent_code: str | None


@dataclass
class Known:
    """What the database already holds, as far as the checks need it."""

    regions: dict[str, KnownRegion] = field(default_factory=dict)
    responders: set[str] = field(default_factory=set)
    # (kind, value) -> external id of the responder holding that contact
    contact_owners: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegionRow:
    line: int
    code: str
    name: str
    level: str
    parent_code: str | None


@dataclass(frozen=True)
class ResponderRow:
    line: int
    external_id: str
    name: str
    role: str
    phones: tuple[str, ...]
    wecom_userid: str | None
    region_codes: tuple[str, ...]
    backup_id: str | None
    supervisor_id: str | None


@dataclass(frozen=True)
class SpeakerRow:
    line: int
    external_id: str
    name: str
    region_code: str
    provider: str
    address: str


@dataclass
class Plan:
    regions: list[RegionRow] = field(default_factory=list)
    # code -> (path, depth) of every region, in the files or in the database
    paths: dict[str, tuple[str, int]] = field(default_factory=dict)
    responders: list[ResponderRow] = field(default_factory=list)
    speakers: list[SpeakerRow] = field(default_factory=list)


def check_directory(tables: dict[str, Table | None], known: Known) -> tuple[Plan, list[RowError]]:
    """Validate every row of every table; a `None` table failed to read (already reported)."""
    errors: list[RowError] = []
    plan = Plan()
    regions = tables.get(REGIONS_FILE)
    region_codes: set[str] | None = set(known.regions)
    if regions is not None:
        region_codes = set(known.regions) | {cells["code"] for _, cells in regions.rows}
        plan.regions, plan.paths = _check_regions(regions, known, errors)
    elif REGIONS_FILE in tables:  # present but unreadable: region references cannot be checked
        region_codes = None
    if (responders := tables.get(RESPONDERS_FILE)) is not None:
        plan.responders = _check_responders(responders, known, region_codes, errors)
    if (speakers := tables.get(SPEAKERS_FILE)) is not None:
        plan.speakers = _check_speakers(speakers, region_codes, errors)
    return plan, errors


Report = Callable[[str], None]


def _reporter(errors: list[RowError], file: str, line: int) -> tuple[Report, Callable[[], bool]]:
    """A function adding errors for one row, and one telling whether it added any."""
    before = len(errors)

    def report(message: str) -> None:
        errors.append(RowError(file, line, message))

    return report, lambda: len(errors) > before


def _require(report: Report, cells: dict[str, str], column: str, limit: int) -> str:
    value = cells[column]
    if not value:
        report(f"{column}: empty")
    elif len(value) > limit:
        report(f"{column}: longer than {limit} characters")
    return value


def _split(value: str) -> list[str]:
    """'a; b;;a' -> ['a', 'b']: list cells split on ';', blanks and repeats dropped."""
    parts = (part.strip() for part in _LIST_SEPARATOR.split(value))
    return list(dict.fromkeys(part for part in parts if part))


def _check_regions(
    table: Table, known: Known, errors: list[RowError]
) -> tuple[list[RegionRow], dict[str, tuple[str, int]]]:
    rows: list[RegionRow] = []
    first_line: dict[str, int] = {}
    broken: set[str] = set()  # codes of file rows with errors: their level is unknown
    for line, cells in table.rows:
        report, failed = _reporter(errors, table.file, line)
        code = cells["code"]
        if not code:
            report("code: empty")
        elif not _REGION_CODE.fullmatch(code):
            report(f"code: {code!r} is not a region code (6 to 20 digits)")
        elif code in first_line:
            report(f"code: duplicate region code {code} (first on line {first_line[code]})")
            continue
        else:
            first_line[code] = line
        name = _require(report, cells, "name", _MAX_NAME)
        level = LEVEL_ALIASES.get(cells["level"].lower())
        if level is None:
            expected = ", ".join(REGION_LEVELS)
            report(f"level: unknown level {cells['level']!r} (expected {expected} or 乡镇, 村...)")
        parent_code = cells["parent_code"] or None
        if parent_code is not None and not _REGION_CODE.fullmatch(parent_code):
            report(f"parent_code: {parent_code!r} is not a region code (6 to 20 digits)")
        if failed() or level is None:
            broken.add(code)
            continue
        rows.append(RegionRow(line, code, name, level, parent_code))

    levels: dict[str, str | None] = {code: region.level for code, region in known.regions.items()}
    levels.update({code: None for code in broken})
    levels.update({row.code: row.level for row in rows})
    before = len(errors)
    for row in rows:
        report, _ = _reporter(errors, table.file, row.line)
        parent = row.parent_code
        if row.level == "county":
            if parent is not None:
                report("parent_code: a county has no parent region")
        elif parent is None:
            report(f"parent_code: empty; a {row.level} needs a parent region")
        elif parent == row.code:
            report("parent_code: a region cannot be its own parent")
        elif parent not in levels:
            report(f"parent_code: unknown region code {parent}")
        elif (parent_level := levels[parent]) and parent_level not in ALLOWED_PARENTS[row.level]:
            allowed = " or ".join(ALLOWED_PARENTS[row.level])
            report(
                f"parent_code: {parent} is a {parent_level}; a {row.level} goes under a {allowed}"
            )
    by_code = {row.code: row for row in rows}
    for code, region in known.regions.items():
        if code in first_line or region.parent_code not in by_code:
            continue
        parent_row = by_code[region.parent_code]
        if parent_row.level not in ALLOWED_PARENTS[region.level]:
            errors.append(
                RowError(
                    table.file,
                    parent_row.line,
                    f"level: existing {region.level} {code} lies under {parent_row.code} "
                    f"and cannot sit under a {parent_row.level}",
                )
            )
    if broken or len(errors) > before:
        return rows, {}  # the tree cannot be resolved until these are fixed

    parents = {code: region.parent_code for code, region in known.regions.items()}
    parents.update({row.code: row.parent_code for row in rows})
    paths, cyclic = _resolve_paths(parents)
    for row in rows:
        if row.code in cyclic:
            errors.append(
                RowError(table.file, row.line, f"parent_code: {row.code} would be its own ancestor")
            )
        elif len(paths[row.code][0]) > _MAX_PATH:
            errors.append(RowError(table.file, row.line, "parent_code: the tree is too deep"))
    return rows, paths


def _resolve_paths(
    parents: dict[str, str | None],
) -> tuple[dict[str, tuple[str, int]], set[str]]:
    """Path and depth of every code whose ancestors lead to a root; the codes on cycles."""
    paths: dict[str, tuple[str, int]] = {}
    cyclic: set[str] = set()
    for start in parents:
        chain: list[str] = []
        on_chain: set[str] = set()
        code: str | None = start
        while code is not None and code not in paths:
            if code in on_chain or code in cyclic or code not in parents:
                cyclic.update(chain)
                break
            on_chain.add(code)
            chain.append(code)
            code = parents[code]
        else:
            path, depth = paths[code] if code is not None else ("/", -1)
            for link in reversed(chain):
                path, depth = f"{path}{link}/", depth + 1
                paths[link] = (path, depth)
    return paths, cyclic


def _check_responders(
    table: Table, known: Known, region_codes: set[str] | None, errors: list[RowError]
) -> list[ResponderRow]:
    rows: list[ResponderRow] = []
    file_ids = {cells["id"] for _line, cells in table.rows if cells["id"]}
    first_line: dict[str, int] = {}
    # (kind, value) -> (external id, line) of the first row giving that contact
    claimed: dict[tuple[str, str], tuple[str, int]] = {}
    for line, cells in table.rows:
        report, failed = _reporter(errors, table.file, line)
        external_id = _require(report, cells, "id", _MAX_ID)
        if external_id and external_id in first_line:
            report(f"id: duplicate id {external_id} (first on line {first_line[external_id]})")
            continue
        first_line[external_id] = line
        name = _require(report, cells, "name", _MAX_NAME)
        phones: list[str] = []
        for raw in _split(cells["phone"]):
            try:
                phones.append(normalize_phone(raw))
            except InvalidPhone:
                report(f"phone: {raw!r} is not a valid phone number")
        phones = list(dict.fromkeys(phones))
        wecom = cells["wecom_userid"] or None
        if wecom is not None and not _WECOM_ID.fullmatch(wecom):
            report(
                f"wecom_userid: {wecom!r} is not a WeCom user id (1 to 64 characters, no spaces)"
            )
        if not _split(cells["phone"]) and wecom is None:
            report("phone, wecom_userid: both empty; give at least one way to reach the person")
        contacts = [("phone", phone) for phone in phones] + ([("wecom", wecom)] if wecom else [])
        for contact in contacts:
            column = "phone" if contact[0] == "phone" else "wecom_userid"
            other = claimed.setdefault(contact, (external_id, line))
            owner = known.contact_owners.get(contact)
            if other[0] != external_id:
                report(f"{column}: {contact[1]} is also given for {other[0]} on line {other[1]}")
            elif owner is not None and owner != external_id and owner not in file_ids:
                report(f"{column}: {contact[1]} already belongs to responder {owner}")
        role = ROLE_ALIASES.get(cells["role"]) or ROLE_ALIASES.get(cells["role"].lower())
        if role is None:
            report(f"role: unknown role {cells['role']!r} (expected one of {', '.join(ROLES)})")
        codes = _split(cells["region_codes"])
        if not codes:
            report("region_codes: empty; a responder answers for at least one region")
        for code in codes:
            if region_codes is not None and code not in region_codes:
                report(f"region_codes: unknown region code {code}")
        links: dict[str, str | None] = {}
        for column, what in (("backup_id", "backup"), ("supervisor_id", "supervisor")):
            other_id = links[column] = cells[column] or None
            if other_id is None:
                continue
            if other_id == external_id:
                report(f"{column}: a responder cannot be their own {what}")
            elif other_id not in file_ids and other_id not in known.responders:
                report(f"{column}: unknown responder id {other_id}")
        if failed() or role is None:
            continue
        rows.append(
            ResponderRow(
                line=line,
                external_id=external_id,
                name=name,
                role=role,
                phones=tuple(phones),
                wecom_userid=wecom,
                region_codes=tuple(codes),
                backup_id=links["backup_id"],
                supervisor_id=links["supervisor_id"],
            )
        )
    return rows


def _check_speakers(
    table: Table, region_codes: set[str] | None, errors: list[RowError]
) -> list[SpeakerRow]:
    rows: list[SpeakerRow] = []
    first_line: dict[str, int] = {}
    for line, cells in table.rows:
        report, failed = _reporter(errors, table.file, line)
        external_id = _require(report, cells, "id", _MAX_ID)
        if external_id and external_id in first_line:
            report(f"id: duplicate id {external_id} (first on line {first_line[external_id]})")
            continue
        first_line[external_id] = line
        name = _require(report, cells, "name", _MAX_NAME)
        region_code = _require(report, cells, "region_code", 32)
        if region_code and region_codes is not None and region_code not in region_codes:
            report(f"region_code: unknown region code {region_code}")
        provider = _require(report, cells, "provider", 32)
        address = _require(report, cells, "address", 200)
        if not failed():
            rows.append(SpeakerRow(line, external_id, name, region_code, provider, address))
    return rows


def sort_errors(errors: Sequence[RowError]) -> list[RowError]:
    """Errors in file order (regions, responders, speakers), then by line."""
    order = {name: index for index, name in enumerate(COLUMNS)}
    return sorted(errors, key=lambda error: (order.get(error.file, -1), error.line))
