"""A +86 county wired as in production: Aliyun and Tencent for mainland texts, Aliyun for
mainland calls, WeCom cards, Twilio for everyone else, each against its local fake.

The app and every fake listen on free loopback ports in the test's event loop; the
providers send to the fakes over HTTP and the fakes push their callbacks back to the
app's hooks, in each vendor's own format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from dispatcher.app import create_app
from dispatcher.clock import ManualClock
from dispatcher.directory import import_directory
from dispatcher.models import Answer, Responder
from dispatcher.runtime import Runtime, open_runtime
from tests.conftest import Backend, make_settings
from tests.fakes.aliyun_api import FakeAliyun
from tests.fakes.serving import free_socket, serve, url_of
from tests.fakes.tencent_api import FakeTencent
from tests.fakes.twilio_api import FakeTwilio
from tests.fakes.wecom_api import FakeWeCom
from tests.twilio_world import twilio_settings
from tests.world_queries import WorldQueries

REGIONS = """code,name,level,parent_code
441799000000,青溪县,county,
441799100000,城关镇,township,441799000000
441799100001,上坪村,village,441799100000
441799100002,下洞村,village,441799100000
"""
RESPONDERS = """id,name,phone,wecom_userid,role,region_codes,backup_id,supervisor_id
t1,王镇长,13900000001,wangzz,township_leader,441799100000,,
a1,张三,13900000011,,village_cadre,441799100001,,t1
b1,赵五,13900000021,,grid_worker,441799100002,,t1
c1,钱六,13900000031,qianliu,grid_worker,441799100002,,t1
d1,孙七,13900000041,,grid_worker,441799100001,,t1
e1,周八,13900000051,,grid_worker,441799100001,,t1
u1,李四,+14155550101,,grid_worker,441799100001,,t1
"""
ALIYUN_TOKEN = "aliyun-path-token-0001"
TENCENT_TOKEN = "tencent-path-token-0001"


@dataclass
class DomesticWorld(WorldQueries):
    runtime: Runtime
    aliyun: FakeAliyun
    tencent: FakeTencent
    wecom: FakeWeCom
    twilio: FakeTwilio
    app_url: str
    client: httpx.AsyncClient

    async def answers_of(self, external_id: str) -> list[Answer]:
        async with self.runtime.db.sessions() as session:
            rows = await session.scalars(
                select(Answer)
                .join(Responder, Responder.id == Answer.responder_id)
                .where(Responder.external_id == external_id)
                .order_by(Answer.id)
            )
            return list(rows)


def domestic_settings(
    aliyun: FakeAliyun, tencent: FakeTencent, wecom: FakeWeCom, urls: dict[str, str]
) -> dict[str, Any]:
    return {
        "aliyun": {
            "access_key_id": aliyun.access_key_id,
            "access_key_secret": aliyun.access_key_secret,
            "sms_base_url": urls["aliyun"],
            "sms_sign_name": aliyun.sign_name,
            "sms_template_code": aliyun.template_code,
            "voice_base_url": urls["aliyun"],
            "voice_tts_code": aliyun.tts_code,
            "callback_token": ALIYUN_TOKEN,
            "sms_rate_per_s": 0,
            "voice_rate_per_s": 0,
        },
        "tencent": {
            "secret_id": tencent.secret_id,
            "secret_key": tencent.secret_key,
            "sms_sdk_app_id": tencent.sdk_app_id,
            "sign_name": tencent.sign_name,
            "template_id": tencent.template_id,
            "base_url": urls["tencent"],
            "callback_token": TENCENT_TOKEN,
            "rate_per_s": 0,
        },
        "wecom": {
            "corp_id": wecom.corp_id,
            "corp_secret": wecom.corp_secret,
            "agent_id": wecom.agent_id,
            "token": wecom.token,
            "encoding_aes_key": wecom.encoding_aes_key,
            "base_url": urls["wecom"],
            "rate_per_s": 0,
        },
    }


@asynccontextmanager
async def domestic_world(
    backend: Backend,
    clock: ManualClock,
    tmp_path: Path,
    *,
    aliyun_extra: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[DomesticWorld]:
    aliyun, tencent, twilio = FakeAliyun(), FakeTencent(), FakeTwilio()
    wecom = FakeWeCom(now=clock.now, members={"wangzz", "qianliu"})
    app_socket = free_socket()
    app_url = url_of(app_socket)
    async with AsyncExitStack() as stack:
        urls = {
            name: await stack.enter_async_context(serve(fake.app))
            for name, fake in (
                ("aliyun", aliyun),
                ("tencent", tencent),
                ("wecom", wecom),
                ("twilio", twilio),
            )
        }
        providers = domestic_settings(aliyun, tencent, wecom, urls)
        providers["twilio"] = twilio_settings(twilio, urls["twilio"])
        providers["aliyun"].update(aliyun_extra or {})
        settings = make_settings(
            backend,
            app={"public_base_url": app_url},
            channels={
                "sms": {"providers": ["twilio"], "routes": {"+86": ["aliyun", "tencent"]}},
                "voice": {"providers": ["twilio"], "routes": {"+86": ["aliyun"]}},
                "wechat": {"providers": ["wecom"]},
            },
            providers=providers,
            **overrides,
        )
        runtime = await open_runtime(
            settings, clock=clock, migrate=False, redis=backend.redis_handle
        )
        aliyun_hook = f"{app_url}/hooks/sms/aliyun/{ALIYUN_TOKEN}"
        aliyun.sms_report_url = aliyun.sms_up_url = aliyun_hook
        aliyun.voice_report_url = f"{app_url}/hooks/voice/aliyun/{ALIYUN_TOKEN}"
        tencent.callback_url = f"{app_url}/hooks/sms/tencent/{TENCENT_TOKEN}"
        wecom.callback_url = f"{app_url}/hooks/wechat/wecom"
        twilio.sms_webhook = f"{app_url}/hooks/sms/twilio"
        directory = tmp_path / "dir"
        directory.mkdir(parents=True)
        for name, text in (
            ("regions", REGIONS),
            ("responders", RESPONDERS),
            ("speakers", "id,name,region_code,provider,address\n"),
        ):
            (directory / f"{name}.csv").write_text(text, encoding="utf-8")
        async with runtime.db.transaction() as session:
            await import_directory(session, directory)
        try:
            async with (
                serve(create_app(runtime), app_socket),
                httpx.AsyncClient(base_url=app_url) as client,
            ):
                yield DomesticWorld(runtime, aliyun, tencent, wecom, twilio, app_url, client)
        finally:
            await runtime.aclose()
            for fake in (aliyun, tencent, wecom, twilio):
                await fake.aclose()
