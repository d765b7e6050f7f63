"""Exports of one warning in the reader's scope: each table as CSV, all four as one XLSX.

`/warnings/{id}/export/{calls|attempts|answers|tasks}.csv` and `/warnings/{id}/export.xlsx`;
the older `/api/v1/warnings/{id}/answers.csv` stays, scoped the same way.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from dispatcher.api.deps import SessionDep
from dispatcher.api.session import AccessDep, warning_or_404
from dispatcher.exports import BUILDERS, TABLES, to_csv, to_xlsx

router = APIRouter(tags=["exports"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _download(body: bytes, media_type: str, filename: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/warnings/{warning_id}/export/{table}.csv")
async def export_csv(
    warning_id: int, table: str, session: SessionDep, access: AccessDep
) -> Response:
    if table not in BUILDERS:
        raise HTTPException(404, f"table: one of {', '.join(TABLES)}")
    await warning_or_404(session, access, warning_id)
    rows = await BUILDERS[table](session, warning_id, access)
    return _download(to_csv(rows), "text/csv; charset=utf-8", f"warning-{warning_id}-{table}.csv")


@router.get("/api/v1/warnings/{warning_id}/answers.csv")
async def export_answers(warning_id: int, session: SessionDep, access: AccessDep) -> Response:
    return await export_csv(warning_id, "answers", session, access)


@router.get("/warnings/{warning_id}/export.xlsx")
async def export_xlsx(warning_id: int, session: SessionDep, access: AccessDep) -> Response:
    await warning_or_404(session, access, warning_id)
    sheets = [(name, await BUILDERS[name](session, warning_id, access)) for name in TABLES]
    return _download(to_xlsx(sheets), XLSX, f"warning-{warning_id}.xlsx")
