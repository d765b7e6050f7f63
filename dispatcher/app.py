"""The FastAPI app factory: mounts the routers, the session middleware and local assets."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from dispatcher.api import (
    dashboard,
    directory_pages,
    exports,
    hooks,
    links,
    live,
    login,
    map_page,
    metrics,
    ops,
    report,
    supervise,
    task_board,
    warning_page,
    warnings,
)
from dispatcher.api.session import install_sessions
from dispatcher.api.web import STATIC_DIR, install_error_pages
from dispatcher.runtime import Runtime

ROUTERS = (
    warnings,
    hooks,
    links,
    login,
    dashboard,
    warning_page,
    map_page,
    task_board,
    report,
    exports,
    live,
    directory_pages,
    supervise,
    ops,
    metrics,
)


_SMS_INBOUND: ASGIApp = ServerErrorMiddleware(hooks.sms_inbound_asgi)


class JiaoyingApp(FastAPI):
    """FastAPI, but a POST of an inbound SMS reply goes straight to its handler
    (`hooks.sms_inbound_asgi`), past the middleware and the routing every other request
    takes: none of it applies to a hook (no session, no page), and in a burst of replies
    it was about a quarter of the server's CPU. An unexpected error still answers 500 and is
    raised to the server, as `ServerErrorMiddleware` does for the rest. The route stays
    declared for the OpenAPI page, and any other method goes the usual way."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == hooks.SMS_INBOUND_PATH
            and scope["method"] == "POST"
        ):
            scope["app"] = self
            await _SMS_INBOUND(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(runtime: Runtime) -> FastAPI:
    app = JiaoyingApp(title="Jiaoying 叫应", version="0.1.0")
    app.state.runtime = runtime
    install_sessions(app, runtime.settings)
    install_error_pages(app)
    for module in ROUTERS:
        app.include_router(module.router)
    app.include_router(warnings.schema_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    return app
