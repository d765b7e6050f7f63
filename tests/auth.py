"""Logging a test client in: a user added straight to the database, then the login form."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from dispatcher.api.session import CSRF_HEADER
from dispatcher.models import User
from dispatcher.runtime import Runtime
from dispatcher.users import add_user

PASSWORD = "correct horse battery"


async def make_user(
    runtime: Runtime, username: str, role: str = "admin", region: str | None = None
) -> None:
    async with runtime.db.transaction() as session:
        if await session.scalar(select(User.id).where(User.username == username)) is not None:
            return
        await add_user(
            session,
            username=username,
            password=PASSWORD,
            role=role,
            region_code=region,
            now=runtime.clock.now(),
        )


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def sign_in(
    client: httpx.AsyncClient,
    runtime: Runtime,
    *,
    username: str = "duty",
    role: str = "admin",
    region: str | None = None,
    create: bool = True,
) -> str:
    """Log `client` in (adding the user first); returns the session's CSRF token, which is
    also set as the client's `X-CSRF-Token` header for the JSON and form POSTs that follow."""
    if create:
        await make_user(runtime, username, role, region)
    form = await client.get("/login")
    token = csrf_of(form.text)
    response = await client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token, "next": "/"},
    )
    assert response.status_code == 303, response.text
    # A login starts a new session with a new token: read it off a page.
    token = csrf_of((await client.get("/dashboard")).text)
    client.headers[CSRF_HEADER] = token
    return token
