"""Shared route dependencies: the runtime and its database session; the body size rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.db.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def body_too_large(runtime: Runtime, body: bytes) -> str | None:
    """Why a posted body is refused for its size (`[server] max_body_bytes`), if it is:
    the webhook and the providers' callbacks share the rule."""
    limit = runtime.settings.server.max_body_bytes
    if len(body) <= limit:
        return None
    return f"body too large: {len(body)} bytes, the limit is {limit}"
