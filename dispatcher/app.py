"""The FastAPI app factory: mounts the routers on a given runtime."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from dispatcher.api import dashboard, hooks, links, metrics, ops, supervise, warnings
from dispatcher.runtime import Runtime


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="Jiaoying 叫应", version="0.1.0")
    app.state.runtime = runtime
    for module in (warnings, hooks, links, dashboard, supervise, ops, metrics):
        app.include_router(module.router)
    app.include_router(warnings.schema_router)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    return app
