"""The benchmark's world: a synthetic directory of N responders and the warning covering it.

The tree is shaped like a real county's: townships of 20 villages, villages of 10 grids,
grids of 20 grid workers, each with a phone and a WeCom account. It is written with
bulk Core inserts (an ORM object per row would make building the world the slow part).
All codes and ids start with `bench`, which is how a later run knows it may clear the
database: the bench refuses a database holding anyone else's directory.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatcher.db import Database, is_sqlite
from dispatcher.models import Base, Contact, Duty, Region, Responder
from dispatcher.statistics import DIRECTORY_TABLES, refresh_statistics

ROOT_CODE = "bench"
GRID_SIZE = 20
GRIDS_PER_VILLAGE = 10
VILLAGES_PER_TOWNSHIP = 20
BATCH = 5000


class NotABenchDatabase(Exception):
    """The database holds a directory the bench did not make: it will not clear it."""


def phone_of(index: int) -> str:
    return f"+86139{index:08d}"


async def clear_bench_data(db: Database) -> None:
    """Empty every table, after checking that only a bench ever wrote there."""
    async with db.sessions() as session:
        foreign = await session.scalar(
            select(func.count())
            .select_from(Responder)
            .where(Responder.external_id.not_like(f"{ROOT_CODE}-%"))
        )
    if foreign:
        raise NotABenchDatabase(
            f"the database holds {foreign} responders the bench did not create; "
            "point --database at a database of its own"
        )
    await _empty_tables(db.engine, db.url)


async def _empty_tables(engine: AsyncEngine, url: str) -> None:
    tables = [table.name for table in Base.metadata.sorted_tables]
    async with engine.begin() as connection:
        if is_sqlite(url):
            for name in reversed(tables):
                await connection.execute(text(f"DELETE FROM {name}"))
        else:
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


def _region_rows(responders: int) -> list[dict[str, Any]]:
    """Regions with explicit ids: root 1, then townships, villages and grids."""
    grids = max(1, -(-responders // GRID_SIZE))
    villages = -(-grids // GRIDS_PER_VILLAGE)
    townships = -(-villages // VILLAGES_PER_TOWNSHIP)
    rows = [_region(1, ROOT_CODE, "演练县", "county", None, f"/{ROOT_CODE}/", 0)]
    ids: dict[str, int] = {}
    next_id = 2

    def add(code: str, name: str, level: str, parent: str, depth: int) -> None:
        nonlocal next_id
        parent_row = rows[ids[parent] - 1] if parent in ids else rows[0]
        rows.append(
            _region(
                next_id, code, name, level, parent_row["id"], parent_row["path"] + code + "/", depth
            )
        )
        ids[code] = next_id
        next_id += 1

    for t in range(townships):
        add(f"bench-t{t}", f"演练镇{t}", "township", ROOT_CODE, 1)
    for v in range(villages):
        add(f"bench-v{v}", f"演练村{v}", "village", f"bench-t{v // VILLAGES_PER_TOWNSHIP}", 2)
    for g in range(grids):
        add(f"bench-g{g}", f"网格{g}", "grid", f"bench-v{g // GRIDS_PER_VILLAGE}", 3)
    return rows


def _region(
    id_: int, code: str, name: str, level: str, parent: int | None, path: str, depth: int
) -> dict[str, Any]:
    return {
        "id": id_,
        "code": code,
        "name": name,
        "level": level,
        "parent_id": parent,
        "path": path,
        "depth": depth,
        "geometry": None,
    }


async def build_directory(db: Database, responders: int, progress: Any = None) -> int:
    """Write the synthetic directory; returns the number of regions."""
    regions = _region_rows(responders)
    first_grid = len(regions) - max(1, -(-responders // GRID_SIZE)) + 1
    async with db.transaction() as session:
        for start in range(0, len(regions), BATCH):
            await session.execute(insert(Region), regions[start : start + BATCH])
        for start in range(0, responders, BATCH):
            stop = min(responders, start + BATCH)
            people = [
                {
                    "id": i + 1,
                    "external_id": f"{ROOT_CODE}-{i}",
                    "name": f"网格员{i}",
                    "role": "grid_worker",
                    "active": True,
                }
                for i in range(start, stop)
            ]
            await session.execute(insert(Responder), people)
            contacts = [
                {"responder_id": i + 1, "kind": "phone", "value": phone_of(i), "position": 0}
                for i in range(start, stop)
            ] + [
                {"responder_id": i + 1, "kind": "wecom", "value": f"bench-u{i}", "position": 0}
                for i in range(start, stop)
            ]
            await session.execute(insert(Contact), contacts)
            duties = [
                {"responder_id": i + 1, "region_id": first_grid + i // GRID_SIZE}
                for i in range(start, stop)
            ]
            await session.execute(insert(Duty), duties)
            if progress is not None:
                progress(stop)
        if not is_sqlite(db.url):
            # Explicit ids leave the sequences behind; later inserts take ids from them.
            for table in ("regions", "responders"):
                await session.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    await refresh_statistics(db, DIRECTORY_TABLES)  # as a directory import does
    return len(regions)


def red_warning(identifier: str, now: datetime) -> bytes:
    """A red rainstorm warning covering the whole synthetic county."""
    sent = now.isoformat(timespec="seconds")
    expires = (now + timedelta(hours=6)).isoformat(timespec="seconds")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
<identifier>{identifier}</identifier><sender>bench@cma.gov.cn</sender>
<sent>{sent}</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
<info><language>zh-CN</language><category>Met</category><event>暴雨</event>
<urgency>Immediate</urgency><severity>Extreme</severity><certainty>Observed</certainty>
<expires>{expires}</expires><senderName>演练县气象台</senderName>
<headline>演练县气象台发布暴雨红色预警信号</headline>
<description>预计未来3小时降雨量将达100毫米以上。</description>
<instruction>立即转移危险区人员。</instruction>
<area><areaDesc>演练县全境</areaDesc>
<geocode><valueName>行政区划代码</valueName><value>{ROOT_CODE}</value></geocode></area>
</info></alert>""".encode()
