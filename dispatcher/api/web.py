"""Jinja2 for the web pages in `templates/web/`, and their local assets under `/static`."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from dispatcher.api.session import csrf_token
from dispatcher.paths import bundled_dir
from dispatcher.vocabulary import (
    CALL_STATE_LABELS,
    CHANNEL_LABELS,
    CIRCUIT_LABELS,
    LEVELS,
    ROLES,
    TASK_STATUS_LABELS,
    WARNING_STATE_LABELS,
)

STATIC_DIR = bundled_dir("templates") / "static"
USER_ROLE_LABELS = {"admin": "管理员", "supervisor": "值班督导", "viewer": "只读"}

templates = Jinja2Templates(directory=str(bundled_dir("templates") / "web"))
templates.env.globals.update(
    LEVELS=LEVELS,
    ROLES=ROLES,
    CALL_STATE_LABELS=CALL_STATE_LABELS,
    WARNING_STATE_LABELS=WARNING_STATE_LABELS,
    CHANNEL_LABELS=CHANNEL_LABELS,
    CIRCUIT_LABELS=CIRCUIT_LABELS,
    TASK_STATUS_LABELS=TASK_STATUS_LABELS,
    USER_ROLE_LABELS=USER_ROLE_LABELS,
)


def render_page(
    request: Request, name: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    access = getattr(request.state, "access", None)
    context = {"access": access, **context}
    # Only logged-in pages and the login form carry a token (answer links set no cookie).
    if "csrf" not in context and (access is not None or name == "login.html"):
        context["csrf"] = csrf_token(request)
    return templates.TemplateResponse(request, name, context, status_code=status)
