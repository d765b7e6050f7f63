"""Speakers for real: a fake HTTP speaker platform, and 4G speakers on a real MQTT broker.

A speaker that plays is recorded; one that fails, is refused, or never confirms gets
its village a door-knock / gong task (鸣锣吹哨).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dispatcher.app import create_app
from dispatcher.clock import ManualClock
from dispatcher.directory import import_directory
from dispatcher.escalation import sweep
from dispatcher.listeners import run_listeners
from dispatcher.models import Broadcast, DoorKnockTask, Region, Speaker
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.worker import run_until_idle
from tests.conftest import IN_CI, Backend, make_settings
from tests.fakes.serving import free_socket, serve, url_of
from tests.fakes.speaker_platform import FakeSpeakerPlatform
from tests.test_spine_e2e import cap, signed

REGIONS = """code,name,level,parent_code
441799000000,青溪县,county,
441799100000,城关镇,township,441799000000
441799100001,上坪村,village,441799100000
441799100002,下洞村,village,441799100000
441799100003,石门村,village,441799100000
441799100004,白沙村,village,441799100000
"""
RESPONDERS = """id,name,phone,wecom_userid,role,region_codes,backup_id,supervisor_id
a1,张三,13900000011,,village_cadre,441799100001,,
"""
HOOK_TOKEN = "speaker-hook-token"


def speakers_csv(provider: str) -> str:
    return "id,name,region_code,provider,address\n" + "".join(
        f"s{i},{name}广播,44179910000{i},{provider},spk-{i}\n"
        for i, name in ((1, "上坪村"), (2, "下洞村"), (3, "石门村"), (4, "白沙村"))
    )


@asynccontextmanager
async def speaker_world(
    backend: Backend, clock: ManualClock, tmp_path: Path, provider: str, options: dict[str, Any]
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    app_socket = free_socket()
    settings = make_settings(
        backend,
        app={"public_base_url": url_of(app_socket)},
        hooks={"token": HOOK_TOKEN},
        channels={"speaker": {"providers": [provider]}},
        providers={provider: options},
    )
    runtime = await open_runtime(settings, clock=clock, migrate=False, redis=backend.redis_handle)
    directory = tmp_path / "dir"
    directory.mkdir()
    for name, text in (
        ("regions", REGIONS),
        ("responders", RESPONDERS),
        ("speakers", speakers_csv(provider)),
    ):
        (directory / f"{name}.csv").write_text(text, encoding="utf-8")
    async with runtime.db.transaction() as session:
        await import_directory(session, directory)
    try:
        async with (
            serve(create_app(runtime), app_socket) as app_url,
            httpx.AsyncClient(base_url=app_url) as client,
        ):
            body = cap("SPK1", ["441799100000"])
            response = await client.post(
                "/api/v1/warnings", content=body, headers=signed(body, clock)
            )
            assert response.status_code == 202 and response.json()["broadcasts"] == 4
            yield runtime, client
    finally:
        await runtime.aclose()


async def broadcasts(runtime: Runtime) -> dict[str, Broadcast]:
    async with runtime.db.sessions() as session:
        rows = await session.execute(
            select(Speaker.address, Broadcast).join(Speaker, Speaker.id == Broadcast.speaker_id)
        )
        return {address: broadcast for address, broadcast in rows.all()}


async def gong_tasks(runtime: Runtime) -> set[str]:
    async with runtime.db.sessions() as session:
        names = await session.scalars(
            select(Region.name)
            .join(DoorKnockTask, DoorKnockTask.region_id == Region.id)
            .where(DoorKnockTask.reason == "speaker_failed")
        )
        return set(names)


async def test_http_speaker_platform(backend: Backend, clock: ManualClock, tmp_path: Path) -> None:
    platform = FakeSpeakerPlatform(
        fates={"spk-1": "ok", "spk-2": "功放故障", "spk-3": "silent"}  # spk-4: unknown device
    )
    async with serve(platform.app) as platform_url:
        options = {
            "base_url": platform_url,
            "api_key": platform.api_key,
            "callback_secret": platform.callback_secret,
            "volume": 90,
        }
        async with speaker_world(backend, clock, tmp_path, "speaker_http", options) as (
            runtime,
            _,
        ):
            await run_until_idle(runtime)
            command = next(c for c in platform.commands if c["deviceId"] == "spk-1")
            assert command["method"] == "startTts" and command["frameId"].startswith("broadcast:")
            assert (command["vol"], command["repeat"]) == (90, 3)
            assert "暴雨红色预警" in command["content"] and "暴雨红色预警" in command["title"]
            assert command["callbackUrl"].endswith(
                f"/hooks/speaker/speaker_http?token={HOOK_TOKEN}"
            )
            found = await broadcasts(runtime)
            assert found["spk-4"].status == "failed" and "device not found" in (
                found["spk-4"].error_message or ""
            )
            assert {found[f"spk-{i}"].status for i in (1, 2, 3)} == {"sent"}
            assert found["spk-1"].provider_message_id.startswith("T")
            assert await gong_tasks(runtime) == {"白沙村"}

            await platform.report_all()
            assert [status for _, status in platform.reports] == [200, 200]
            found = await broadcasts(runtime)
            assert found["spk-1"].status == "played"
            assert (found["spk-2"].status, found["spk-2"].error_message) == ("failed", "功放故障")
            assert found["spk-3"].status == "sent"
            assert await gong_tasks(runtime) == {"白沙村", "下洞村"}

            # a report with the wrong signature is refused and changes nothing
            url = command["callbackUrl"]
            forged = {"frameId": "x", "taskId": found["spk-3"].provider_message_id, "result": "ok"}
            assert await platform.post_report(url, forged, secret="wrong") == 403
            # spk-3 never confirms: after the timeout its village gets a task too
            clock.advance(seconds=runtime.settings.worker.speaker_confirm_timeout_s + 1)
            await sweep(runtime)
            found = await broadcasts(runtime)
            assert (found["spk-3"].status, found["spk-3"].error_message) == ("failed", "播放未确认")
            assert await gong_tasks(runtime) == {"白沙村", "下洞村", "石门村"}
        await platform.aclose()


async def test_http_speaker_platform_outage_is_retried(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    platform = FakeSpeakerPlatform(fates={f"spk-{i}": "ok" for i in range(1, 5)}, failing=True)
    async with serve(platform.app) as platform_url:
        options = {"base_url": platform_url, "api_key": platform.api_key}
        async with speaker_world(backend, clock, tmp_path, "speaker_http", options) as (
            runtime,
            _,
        ):
            await run_until_idle(runtime)
            found = await broadcasts(runtime)
            assert {(b.status, b.try_number, b.error_code) for b in found.values()} == {
                ("queued", 2, "INTERNAL")
            }
            platform.failing = False
            clock.advance(seconds=runtime.settings.worker.retry_base_s)
            await sweep(runtime)
            await run_until_idle(runtime)
            assert {b.status for b in (await broadcasts(runtime)).values()} == {"sent"}
            assert await gong_tasks(runtime) == set()
        await platform.aclose()


def _broker_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), 2):
            return True
    except OSError:
        return False


@pytest.fixture
def mqtt_broker() -> tuple[str, int]:
    if not _broker_reachable():
        if IN_CI:
            pytest.fail("CI needs the MQTT broker (Mosquitto) on 127.0.0.1:1883")
        pytest.skip("no MQTT broker on 127.0.0.1:1883 (start Mosquitto to run this test)")
    return "127.0.0.1", 1883


async def fake_speakers(prefix: str, results: dict[str, str], ready: asyncio.Event) -> None:
    """4G speakers: each takes commands on its topic and reports on its reply topic."""
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"fake-{prefix[-8:]}") as client:
        await client.subscribe(f"{prefix}/+/cmd", qos=1)
        ready.set()
        async for incoming in client.messages:
            device = str(incoming.topic).split("/")[-2]
            command = json.loads(bytes(incoming.payload))  # type: ignore[arg-type]
            assert command["method"] == "startTts" and command["repeat"] == 3
            reply = {"frameId": command["frameId"], "result": results[device]}
            if results[device] != "silent":
                await client.publish(f"{prefix}/{device}/reply", json.dumps(reply), qos=1)


async def test_mqtt_speakers(
    backend: Backend, clock: ManualClock, tmp_path: Path, mqtt_broker: tuple[str, int]
) -> None:
    prefix = f"jiaoying-test-{secrets.token_hex(6)}/speakers"
    results = {"spk-1": "ok", "spk-2": "ok", "spk-3": "设备离线", "spk-4": "silent"}
    ready = asyncio.Event()
    devices = asyncio.create_task(fake_speakers(prefix, results, ready))
    await asyncio.wait_for(ready.wait(), 10)
    options = {"host": mqtt_broker[0], "port": mqtt_broker[1], "topic_prefix": prefix}
    async with speaker_world(backend, clock, tmp_path, "speaker_mqtt", options) as (runtime, _):
        listener = asyncio.create_task(run_listeners(runtime))
        try:
            provider = runtime.providers.get("speaker", "speaker_mqtt")
            await asyncio.wait_for(provider.subscribed.wait(), 10)  # type: ignore[union-attr]
            # the reports travel over the broker; wait for all three to be applied
            for _ in range(200):
                await run_until_idle(runtime)
                found = await broadcasts(runtime)
                if sum(b.status != "sent" for b in found.values()) == 3:
                    break
                await asyncio.sleep(0.05)
            assert {a: b.status for a, b in found.items()} == {
                "spk-1": "played",
                "spk-2": "played",
                "spk-3": "failed",
                "spk-4": "sent",
            }
            assert found["spk-3"].error_message == "设备离线"
            assert found["spk-1"].provider_message_id.startswith("broadcast:")
            assert await gong_tasks(runtime) == {"石门村"}
        finally:
            listener.cancel()
            devices.cancel()
            await asyncio.gather(listener, devices, return_exceptions=True)
