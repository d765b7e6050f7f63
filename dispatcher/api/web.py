"""Jinja2 for the web pages in `templates/web/`, and their local assets under `/static`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

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


ERROR_TITLES = {403: "无权访问", 404: "未找到", 405: "不支持的操作", 429: "请稍后再试"}


def install_error_pages(app: FastAPI) -> None:
    """A browser asking for a page gets a page in Chinese; API clients keep the JSON."""

    @app.exception_handler(HTTPException)
    async def _error_page(request: Request, exc: HTTPException) -> Response:
        wants_html = "text/html" in request.headers.get("accept", "")
        if not wants_html or request.url.path.startswith(("/api/", "/hooks/")):
            return await http_exception_handler(request, exc)
        title = ERROR_TITLES.get(exc.status_code, "出错了")
        text = {
            403: "您的账号没有权限进行此操作。",
            404: "该页面不存在，或不在您负责的区域内。",
        }.get(exc.status_code, str(exc.detail))
        return render_page(request, "message.html", {"title": title, "text": text}, exc.status_code)
