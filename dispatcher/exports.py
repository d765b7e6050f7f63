"""A warning's records as tables, for CSV and XLSX export: calls, attempts, answers, tasks.

Each table is a header and rows of plain values, in the reader's scope; phone numbers are
masked for viewers. CSV carries a UTF-8 BOM so spreadsheet programs read the Chinese.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from openpyxl import Workbook
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.access import Access
from dispatcher.models import Answer, Attempt, Call, DoorKnockTask, Region, Responder

TABLES = ("calls", "attempts", "answers", "tasks")
Table = tuple[list[str], list[list[Any]]]


def _iso(value: Any) -> str:
    return value.isoformat() if value is not None else ""


async def calls_table(session: AsyncSession, warning_id: int, access: Access) -> Table:
    header = ["call_id", "responder_id", "responder", "role", "region_code", "region"]
    header += ["origin", "state", "escalation_step", "status", "evacuated"]
    header += ["delivered_at", "answered_at", "door_knock_task_id"]
    rows = await session.execute(
        select(Call, Responder, Region)
        .join(Responder, Responder.id == Call.responder_id)
        .join(Region, Region.id == Call.region_id)
        .where(Call.warning_id == warning_id, access.regions())
        .order_by(Call.id)
    )
    return header, [
        [
            c.id,
            r.external_id,
            r.name,
            r.role,
            g.code,
            g.name,
            c.origin,
            c.state,
            c.escalation_step,
            c.answer_meaning or "",
            c.evacuated or "",
            _iso(c.delivered_at),
            _iso(c.answered_at),
            c.door_knock_task_id or "",
        ]
        for c, r, g in rows.all()
    ]


async def attempts_table(session: AsyncSession, warning_id: int, access: Access) -> Table:
    header = ["attempt_id", "call_id", "purpose", "channel", "provider", "address", "status"]
    header += ["error_code", "try_number", "due_at", "sent_at", "reported_at"]
    rows = await session.scalars(
        select(Attempt)
        .join(Call, Call.id == Attempt.call_id)
        .join(Region, Region.id == Call.region_id)
        .where(Attempt.warning_id == warning_id, access.regions())
        .order_by(Attempt.id)
    )
    return header, [
        [
            a.id,
            a.call_id,
            a.purpose,
            a.channel,
            a.provider or "",
            access.address(a.address),
            a.status,
            a.error_code or "",
            a.try_number,
            _iso(a.due_at),
            _iso(a.sent_at),
            _iso(a.reported_at),
        ]
        for a in rows
    ]


async def answers_table(session: AsyncSession, warning_id: int, access: Access) -> Table:
    header = ["warning_id", "call_id", "responder_id", "responder", "region_code", "region"]
    header += ["at", "channel", "status", "people", "raw", "recorded_by", "method"]
    rows = await session.execute(
        select(Answer, Call, Responder, Region)
        .join(Call, Call.id == Answer.call_id)
        .join(Responder, Responder.id == Answer.responder_id)
        .join(Region, Region.id == Call.region_id)
        .where(Call.warning_id == warning_id, access.regions())
        .order_by(Answer.at, Answer.id)
    )
    return header, [
        [
            warning_id,
            c.id,
            r.external_id,
            r.name,
            g.code,
            g.name,
            a.at.isoformat(),
            a.channel,
            a.meaning,
            "" if a.people is None else a.people,
            a.raw,
            a.recorded_by or "",
            a.method or "",
        ]
        for a, c, r, g in rows.all()
    ]


async def tasks_table(session: AsyncSession, warning_id: int, access: Access) -> Table:
    header = ["task_id", "region_code", "region", "reason", "status", "assignee"]
    header += ["created_at", "accepted_at", "finished_at", "notes"]
    rows = await session.execute(
        select(DoorKnockTask, Region, Responder.name)
        .join(Region, Region.id == DoorKnockTask.region_id)
        .outerjoin(Responder, Responder.id == DoorKnockTask.assignee_id)
        .where(DoorKnockTask.warning_id == warning_id, access.regions())
        .order_by(DoorKnockTask.id)
    )
    return header, [
        [
            t.id,
            g.code,
            g.name,
            t.reason,
            t.status,
            name or "",
            _iso(t.created_at),
            _iso(t.accepted_at),
            _iso(t.finished_at),
            t.notes,
        ]
        for t, g, name in rows.all()
    ]


BUILDERS = {
    "calls": calls_table,
    "attempts": attempts_table,
    "answers": answers_table,
    "tasks": tasks_table,
}


def _cell(value: Any) -> Any:
    """Texts from the outside (SMS replies) never run as a spreadsheet formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table[0])
    writer.writerows([_cell(v) for v in row] for row in table[1])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(sheets: Sequence[tuple[str, Table]]) -> bytes:
    """One sheet per table, header row frozen."""
    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for title, (header, rows) in sheets:
        sheet = book.create_sheet(title)
        sheet.append(header)
        for row in rows:
            sheet.append([_cell(v) for v in row])
        sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
