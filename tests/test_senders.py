"""Sender permissions (levels, areas), the per-sender rate limit, refusal bodies and the
published JSON Schema, through the webhook on each back end."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from dispatcher.app import create_app
from dispatcher.clock import ManualClock
from dispatcher.models import AuditEvent, Warning
from dispatcher.runtime import Runtime, open_runtime
from tests.conftest import Backend, make_settings
from tests.test_lifecycle_e2e import alert, post
from tests.test_spine_e2e import setup_directory


@pytest.fixture
async def limited(backend: Backend, clock: ManualClock) -> AsyncIterator[Runtime]:
    """A runtime whose sender may send red/orange for 城关镇 only, three a minute."""
    settings = make_settings(
        backend,
        senders=[
            {
                "name": "met",
                "secret": "test-sender-secret",
                "levels": ["red", "orange"],
                "areas": ["441799100000"],
                "max_per_minute": 3,
            }
        ],
    )
    runtime = await open_runtime(settings, clock=clock, migrate=False, redis=backend.redis_handle)
    yield runtime
    await runtime.aclose()


async def stored(runtime: Runtime) -> int:
    async with runtime.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Warning)) or 0)


async def test_sender_areas_levels_and_rate(
    limited: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    await setup_directory(limited, tmp_path)
    transport = httpx.ASGITransport(app=create_app(limited))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        other = await post(client, clock, alert("A1", codes=("441799200000",)))
        assert other.status_code == 403
        assert other.json()["field"] == "/alert/info/area"
        assert "may not warn area 441799200000" in other.json()["detail"]
        neighbour = await post(client, clock, alert("A2", codes=("441800100000",)))
        assert neighbour.status_code == 403  # not in the directory, but another county's code
        yellow = await post(client, clock, alert("A3", colour="黄色"))
        assert yellow.status_code == 403
        assert yellow.json()["detail"].startswith("sender 'met' may not send yellow (黄色)")
        assert await stored(limited) == 0

        clock.advance(minutes=1)
        inside = await post(client, clock, alert("A4", codes=("441799100001",)))
        assert inside.status_code == 202 and inside.json()["calls"] == 2
        for identifier in ("A5", "A6"):
            assert (await post(client, clock, alert(identifier))).status_code == 202
        flood = await post(client, clock, alert("A7"))
        assert flood.status_code == 429
        assert flood.headers["retry-after"] == "60"
        assert "3 warnings a minute" in flood.json()["detail"]
        clock.advance(minutes=1)
        assert (await post(client, clock, alert("A7"))).status_code == 202
        assert await stored(limited) == 4


async def test_refusals_name_the_field(runtime: Runtime, clock: ManualClock) -> None:
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        xml = alert("F1").replace(b"<event>\xe6\x9a\xb4\xe9\x9b\xa8</event>", b"<event></event>")
        missing = await post(client, clock, xml)
        assert missing.json() == {"detail": "missing <event>", "field": "/alert/info/event"}
        polygon = alert("F2").replace(
            b"</geocode></area>", b"</geocode><polygon>91,111 21,112 22,112</polygon></area>"
        )
        bad = await post(client, clock, polygon)
        assert bad.status_code == 400
        assert bad.json()["field"] == "/alert/info/area[1]/polygon[1]"
        assert "latitude 91.0" in bad.json()["detail"]
        document = {
            "identifier": "J1",
            "sender": "x",
            "sent": "2026-07-01T10:00:00+08:00",
            "status": "Actual",
            "msgType": "Alert",
            "event": "暴雨",
            "areas": [{"geocodes": ["441799100000"], "circles": ["21,111 -3"]}],
        }
        body = json.dumps(document).encode()
        response = await client.post(
            "/api/v1/warnings",
            content=body,
            headers={**signed_json(body, clock)},
        )
        assert response.status_code == 400
        assert response.json()["field"] == "areas.0.circles.0"
        document["areas"] = [{"geocode": ["441799100000"]}]
        body = json.dumps(document).encode()
        response = await client.post(
            "/api/v1/warnings", content=body, headers=signed_json(body, clock)
        )
        assert response.status_code == 422
        assert response.json()["field"] == "areas.0.geocode"
    async with runtime.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def signed_json(body: bytes, clock: ManualClock) -> dict[str, str]:
    from tests.test_spine_e2e import signed

    return {**signed(body, clock), "Content-Type": "application/json"}


async def test_json_schema_is_published_and_describes_what_is_accepted(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    await setup_directory(runtime, tmp_path)
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/api/v1/schema/warning.json")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/schema+json"
        schema = response.json()
        assert schema["$id"] == "/api/v1/schema/warning.json"
        assert schema["$schema"].endswith("2020-12/schema")
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) == {"identifier", "sender", "sent", "status", "msgType"}
        assert "Exercise" in schema["properties"]["status"]["enum"]
        assert {"areas", "eventCodes", "parameters", "expires"} <= set(schema["properties"])
        # a body built from the schema's own field names is accepted
        document = {
            "identifier": "JS-1",
            "sender": "441799000000@cma.gov.cn",
            "sent": "2026-07-01T10:00:00+08:00",
            "status": "Actual",
            "msgType": "Alert",
            "event": "暴雨",
            "level": "橙色",
            "eventCodes": [{"valueName": "预警信号", "value": "暴雨"}],
            "areas": [{"areaDesc": "城关镇", "geocodes": ["441799100"]}],
        }
        assert set(document) <= set(schema["properties"])
        body = json.dumps(document).encode()
        accepted = await client.post(
            "/api/v1/warnings", content=body, headers=signed_json(body, clock)
        )
        assert accepted.status_code == 202, accepted.text
        assert (accepted.json()["level"], accepted.json()["calls"]) == ("orange", 5)
