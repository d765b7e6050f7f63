"""`/tasks`: the door-knock board across warnings, one column per status, with who and
since when."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from dispatcher.api.deps import RuntimeDep, SessionDep
from dispatcher.api.session import AccessDep
from dispatcher.api.web import render_page
from dispatcher.boards import task_board
from dispatcher.figures import since_label

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/tasks", response_class=HTMLResponse)
async def task_board_page(
    request: Request, session: SessionDep, runtime: RuntimeDep, access: AccessDep
) -> HTMLResponse:
    board = await task_board(session, access)
    now = runtime.clock.now()
    for rows in board.values():
        for row in rows:
            row["since_label"] = since_label(row["since"], now)
    return render_page(request, "tasks.html", {"board": board})
