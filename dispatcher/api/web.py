"""Jinja2 for the web pages in `templates/web/`."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from dispatcher.paths import bundled_dir
from dispatcher.vocabulary import (
    CALL_STATE_LABELS,
    CHANNEL_LABELS,
    CIRCUIT_LABELS,
    LEVELS,
    ROLES,
    WARNING_STATE_LABELS,
)

templates = Jinja2Templates(directory=str(bundled_dir("templates") / "web"))
templates.env.globals.update(
    LEVELS=LEVELS,
    ROLES=ROLES,
    CALL_STATE_LABELS=CALL_STATE_LABELS,
    WARNING_STATE_LABELS=WARNING_STATE_LABELS,
    CHANNEL_LABELS=CHANNEL_LABELS,
    CIRCUIT_LABELS=CIRCUIT_LABELS,
)


def render_page(
    request: Request, name: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status)
