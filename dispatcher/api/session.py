"""Login sessions, roles and CSRF for the dashboard and its API reads.

Sessions live in a signed cookie (Starlette's `SessionMiddleware`, keyed with
`app.secret_key`) holding only the user's id and a CSRF token; the user is read again on
each request, so a deactivated user is out at once. Pages redirect to `/login` when
nobody is logged in, `/api/` routes answer 401 JSON. Every POST from a logged-in user
carries the CSRF token, as the form field `csrf_token` or the header `X-CSRF-Token`.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.middleware.sessions import SessionMiddleware

from dispatcher.access import Access, visible_warning
from dispatcher.api.deps import RuntimeDep
from dispatcher.config import Settings
from dispatcher.models import Region, User, Warning

SESSION_COOKIE = "jiaoying_session"
SESSION_MAX_AGE_S = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(Exception):
    """Nobody (or nobody still active) is logged in on this request."""


def install_sessions(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.app.secret_key,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_S,
        same_site="lax",
        https_only=settings.app.public_base_url.startswith("https://"),
    )

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "login required"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    expected = request.session.get("csrf")
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not given or not secrets.compare_digest(expected, given):
        raise HTTPException(403, "csrf token missing or wrong: reload the page and try again")


async def current_access(request: Request, runtime: RuntimeDep) -> Access:
    user_id = request.session.get("uid")
    if not isinstance(user_id, int):
        raise LoginRequired()
    async with runtime.db.sessions() as session:
        row = (
            await session.execute(
                select(User, Region)
                .outerjoin(Region, Region.id == User.region_id)
                .where(User.id == user_id)
            )
        ).first()
    if row is None or not row[0].active:
        request.session.clear()
        raise LoginRequired()
    user, region = row
    access = Access(
        user_id=user.id,
        username=user.username,
        role=user.role,
        region_code=region.code if region else None,
        region_name=region.name if region else None,
        region_path=region.path if region else None,
    )
    request.state.access = access
    return access


AccessDep = Annotated[Access, Depends(current_access)]


async def writer_access(access: AccessDep) -> Access:
    """Someone who may change things (record answers): an admin or a supervisor."""
    if not access.can_write:
        raise HTTPException(403, "viewers can only read")
    return access


WriterDep = Annotated[Access, Depends(writer_access)]
CsrfDep = Depends(check_csrf)


async def warning_or_404(session: AsyncSession, access: Access, warning_id: int) -> Warning:
    """The warning if this reader may see it; 404 alike for missing and out of scope."""
    warning = await visible_warning(session, access, warning_id)
    if warning is None:
        raise HTTPException(404, f"no warning {warning_id}")
    return warning


async def region_or_404(session: AsyncSession, access: Access, code: str) -> Region:
    region = await session.scalar(select(Region).where(Region.code == code))
    if region is None or not access.covers(region.path):
        raise HTTPException(404, f"no region {code}")
    return region
