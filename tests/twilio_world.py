"""A small world for the Twilio tests: the app served over HTTP, the fake Twilio, a county.

The app and the fake each listen on a free loopback port in the test's event loop; the
real `twilio` library sends to the fake, and the fake posts signed callbacks back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from dispatcher.app import create_app
from dispatcher.clock import ManualClock
from dispatcher.directory import import_directory
from dispatcher.models import AuditEvent, Call, Responder
from dispatcher.runtime import Runtime, open_runtime
from tests.conftest import Backend, make_settings
from tests.fakes.serving import free_socket, serve, url_of
from tests.fakes.twilio_api import FakeTwilio
from tests.world_queries import WorldQueries

REGIONS = """code,name,level,parent_code
441799000000,青溪县,county,
441799100000,城关镇,township,441799000000
441799100001,上坪村,village,441799100000
441799100002,下洞村,village,441799100000
"""
RESPONDERS = """id,name,phone,wecom_userid,role,region_codes,backup_id,supervisor_id
t1,王镇长,13900000001,,township_leader,441799100000,,
a1,张三,13900000011,,village_cadre,441799100001,,t1
u1,李四,+14155550101,,grid_worker,441799100001,,t1
b1,赵五,13900000021,,grid_worker,441799100002,,t1
"""
SPEAKERS = "id,name,region_code,provider,address\n"
HOOK_TOKEN = "hook-token-1"


@dataclass
class World(WorldQueries):
    runtime: Runtime
    fake: FakeTwilio
    app_url: str
    client: httpx.AsyncClient

    def hook(self, channel: str) -> str:
        return f"{self.app_url}/hooks/{channel}/twilio?token={HOOK_TOKEN}"

    async def undeliverable(self) -> set[str]:
        """Who the sweep found nothing could reach (their ladder jumped ahead)."""
        async with self.runtime.db.sessions() as session:
            names = await session.scalars(
                select(Responder.external_id)
                .join(Call, Call.responder_id == Responder.id)
                .join(AuditEvent, AuditEvent.call_id == Call.id)
                .where(AuditEvent.kind == "call.undeliverable")
            )
            return set(names)


def twilio_settings(fake: FakeTwilio, fake_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "account_sid": fake.account_sid,
        "auth_token": fake.auth_token,
        "from_number": fake.number,
        "base_url": fake_url,
        "sms_rate_per_s": 0,
        "voice_rate_per_s": 0,
        **extra,
    }


@asynccontextmanager
async def twilio_world(
    backend: Backend,
    clock: ManualClock,
    tmp_path: Path,
    *,
    sms: list[str] | None = None,
    twilio: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[World]:
    fake = FakeTwilio()
    app_socket = free_socket()
    app_url = url_of(app_socket)
    async with serve(fake.app) as fake_url:
        settings = make_settings(
            backend,
            app={"public_base_url": app_url},
            hooks={"token": HOOK_TOKEN},
            channels={
                "sms": {"providers": sms or ["twilio"]},
                "voice": {"providers": ["twilio"]},
            },
            providers={"twilio": twilio_settings(fake, fake_url, **(twilio or {}))},
            **overrides,
        )
        runtime = await open_runtime(
            settings, clock=clock, migrate=False, redis=backend.redis_handle
        )
        fake.sms_webhook = f"{app_url}/hooks/sms/twilio?token={HOOK_TOKEN}"
        directory = tmp_path / "dir"
        directory.mkdir()
        for name, text in (
            ("regions", REGIONS),
            ("responders", RESPONDERS),
            ("speakers", SPEAKERS),
        ):
            (directory / f"{name}.csv").write_text(text, encoding="utf-8")
        async with runtime.db.transaction() as session:
            await import_directory(session, directory)
        try:
            async with (
                serve(create_app(runtime), app_socket),
                httpx.AsyncClient(base_url=app_url) as client,
            ):
                yield World(runtime, fake, app_url, client)
        finally:
            await runtime.aclose()
            await fake.aclose()
