"""The FastAPI app factory: mounts the routers, the session middleware and local assets."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

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


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="Jiaoying 叫应", version="0.1.0")
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
