"""`/login` and `/logout`: a username and password form, a signed session cookie.

After `MAX_FAILURES` wrong passwords for one username within `LOCKOUT_S`, that username
is refused (429) until the window passes; the count lives in Redis, shared by every API
process.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dispatcher.api.deps import RuntimeDep
from dispatcher.api.session import CsrfDep, csrf_token
from dispatcher.api.web import render_page
from dispatcher.audit import record
from dispatcher.redis_keys import login_failures_key
from dispatcher.users import authenticate

router = APIRouter(tags=["login"], include_in_schema=False)
MAX_FAILURES = 10
LOCKOUT_S = 15 * 60


def _local(target: str) -> str:
    """Only a path on this site: never send a user elsewhere after login."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/dashboard") -> HTMLResponse:
    csrf_token(request)
    return render_page(request, "login.html", {"next": _local(next), "problem": ""})


@router.post("/login", dependencies=[CsrfDep])
async def login(
    request: Request,
    runtime: RuntimeDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form()] = "/dashboard",
) -> Response:
    key = login_failures_key(username.strip().lower()[:64])
    redis = runtime.queue.pool
    if int(await redis.get(key) or 0) >= MAX_FAILURES:
        context = {"next": _local(next), "problem": "密码错误次数过多，请15分钟后再试。"}
        return render_page(request, "login.html", context, status=429)
    async with runtime.db.transaction() as session:
        user = await authenticate(session, username, password)
        now = runtime.clock.now()
        if user is None:
            record(
                session,
                now,
                "user.login_failed",
                actor="anonymous",
                detail={"username": username[:64]},
            )
        else:
            record(session, now, "user.login", actor=f"user:{user.username}")
            user_id = user.id
    if user is None:
        await redis.incr(key)
        await redis.expire(key, LOCKOUT_S)
        context = {"next": _local(next), "problem": "用户名或密码错误。"}
        return render_page(request, "login.html", context, status=401)
    await redis.delete(key)
    request.session.clear()
    request.session["uid"] = user_id
    csrf_token(request)
    return RedirectResponse(_local(next), status_code=303)


@router.post("/logout", dependencies=[CsrfDep])
async def logout(request: Request) -> RedirectResponse:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
