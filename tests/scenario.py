"""A small county and the steps of a warning's life, shared by the ladder and answer tests.

青溪县 (county duty officer c1) > 城关镇 (leader t1, duty officer td) > 上坪村 (a1 with
backup a2, a3) and 下洞村 (b3) > 下洞一组 (grid: b1, b2); 河口镇 (h0) > 河口村 (h1). The
village people report to t1, h1 to h0. Households in 上坪村 and 下洞一组.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from dispatcher.app import create_app
from dispatcher.clock import ManualClock
from dispatcher.directory import import_directory
from dispatcher.escalation import SweepReport, sweep
from dispatcher.models import Answer, Attempt, AuditEvent, Call, DoorKnockTask, Responder
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.security import sign_body
from dispatcher.vocabulary import AttemptStatus
from dispatcher.worker import run_until_idle
from tests.auth import sign_in
from tests.conftest import SENDER_SECRET, Backend, make_settings

REGIONS = """code,name,level,parent_code
441799000000,青溪县,county,
441799100000,城关镇,township,441799000000
441799100001,上坪村,village,441799100000
441799100002,下洞村,village,441799100000
44179910000201,下洞一组,grid,441799100002
441799200000,河口镇,township,441799000000
441799200001,河口村,village,441799200000
"""
RESPONDERS = """id,name,phone,wecom_userid,role,region_codes,backup_id,supervisor_id
c1,县值班员,13900000001,,county_duty,441799000000,,
t1,王镇长,13900000002,,township_leader,441799100000,,c1
td,城关值班,13900000003,,township_duty,441799100000,,t1
a1,张三,13900000011,u11,village_cadre,441799100001,a2,t1
a2,李四,13900000012,,village_cadre,441799100001,,t1
a3,孙七,13900000013,,grid_worker,441799100001,,t1
b3,周八,13900000023,,village_cadre,441799100002,,t1
b1,赵五,13900000021,,grid_worker,44179910000201,,t1
b2,钱六,13900000022,,grid_worker,44179910000201,,t1
h0,河口镇长,13900000030,,township_leader,441799200000,,c1
h1,吴九,13900000031,,village_cadre,441799200001,,h0
"""
HOUSEHOLDS = """id,region_code,address,people,flags
H1,441799100001,上坪村1号,1,独居老人
H2,441799100001,上坪村2号,4,
H3,44179910000201,下洞一组5号,2,独居老人;行动不便
"""
PHONE = {
    "c1": "+8613900000001",
    "t1": "+8613900000002",
    "td": "+8613900000003",
    "a1": "+8613900000011",
    "a2": "+8613900000012",
    "a3": "+8613900000013",
    "b3": "+8613900000023",
    "b1": "+8613900000021",
    "b2": "+8613900000022",
    "h0": "+8613900000030",
    "h1": "+8613900000031",
}
COLOURS = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}
SEVERITY = {"blue": "Minor", "yellow": "Moderate", "orange": "Severe", "red": "Extreme"}
SENDER = "441799000000@cma.gov.cn"
SENT = "2026-07-01T10:00:00+08:00"


def cap(
    identifier: str,
    level: str = "red",
    codes: tuple[str, ...] = ("441799000000",),
    event: str = "暴雨",
    msg_type: str = "Alert",
    references: str = "",
) -> bytes:
    geocodes = "".join(
        f"<geocode><valueName>行政区划代码</valueName><value>{c}</value></geocode>" for c in codes
    )
    refs = f"<references>{references}</references>" if references else ""
    verb = "解除" if msg_type == "Cancel" else "发布"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
<identifier>{identifier}</identifier><sender>{SENDER}</sender>
<sent>{SENT}</sent><status>Actual</status><msgType>{msg_type}</msgType><scope>Public</scope>{refs}
<info><language>zh-CN</language><category>Met</category><event>{event}</event>
<urgency>Immediate</urgency><severity>{SEVERITY[level]}</severity><certainty>Observed</certainty>
<senderName>青溪县气象台</senderName><headline>青溪县气象台{verb}{event}{COLOURS[level]}预警信号</headline>
<description>预计未来3小时有强降水。</description><instruction>注意防范。</instruction>
<area><areaDesc>青溪县</areaDesc>{geocodes}</area></info></alert>""".encode()


@dataclass
class County:
    """The scenario's runtime, clock and an HTTP client on the app."""

    runtime: Runtime
    clock: ManualClock
    client: httpx.AsyncClient

    async def post(self, body: bytes) -> dict[str, Any]:
        ts = str(int(self.clock.now().timestamp()))
        headers = {
            "X-Jiaoying-Timestamp": ts,
            "X-Jiaoying-Signature": sign_body(SENDER_SECRET, ts, body),
            "Content-Type": "application/cap+xml",
        }
        response = await self.client.post("/api/v1/warnings", content=body, headers=headers)
        assert response.status_code == 202, response.text
        return dict(response.json())

    async def warn(self, identifier: str, level: str = "red", **kwargs: Any) -> int:
        return int((await self.post(cap(identifier, level, **kwargs)))["id"])

    async def cancel(self, identifier: str) -> None:
        await self.post(
            cap(
                f"{identifier}-cancel",
                msg_type="Cancel",
                references=f"{SENDER},{identifier},{SENT}",
            )
        )

    async def text(self, who: str, body: str) -> None:
        response = await self.client.post(
            "/hooks/sms/inbound", data={"From": PHONE.get(who, who), "Body": body}
        )
        assert response.status_code == 200, response.text

    async def work(self) -> None:
        await run_until_idle(self.runtime)

    async def at(self, minutes: float, *, work: bool = True) -> SweepReport:
        """Move the clock on by `minutes`, sweep, and let the worker send what is due."""
        self.clock.advance(minutes=minutes)
        report = await sweep(self.runtime)
        if work:
            await self.work()
        return report

    async def calls(self, warning_id: int) -> dict[str, Call]:
        async with self.runtime.db.sessions() as session:
            rows = await session.execute(
                select(Responder.external_id, Call)
                .join(Call, Call.responder_id == Responder.id)
                .where(Call.warning_id == warning_id)
            )
            return {external_id: call for external_id, call in rows.all()}

    async def queued_sends(self, warning_id: int) -> int:
        """How many of the warning's sends are still queued."""
        async with self.runtime.db.sessions() as session:
            found = await session.scalar(
                select(func.count())
                .select_from(Attempt)
                .where(Attempt.warning_id == warning_id, Attempt.status == AttemptStatus.QUEUED)
            )
        return found or 0

    async def texts_to(self, who: str, purpose: str | None = None) -> list[str]:
        """Bodies of the texts queued or sent to a person's phone, oldest first."""
        async with self.runtime.db.sessions() as session:
            query = select(Attempt.body).where(
                Attempt.address == PHONE[who], Attempt.channel == "sms"
            )
            if purpose:
                query = query.where(Attempt.purpose == purpose)
            return [b or "" for b in await session.scalars(query.order_by(Attempt.id))]

    async def answers_of(self, who: str) -> list[str]:
        """The meanings of a person's answers, oldest first."""
        responder_id = await self.responder_id(who)
        async with self.runtime.db.sessions() as session:
            rows = await session.scalars(
                select(Answer.meaning)
                .where(Answer.responder_id == responder_id)
                .order_by(Answer.id)
            )
            return list(rows)

    async def tasks(self, warning_id: int) -> list[DoorKnockTask]:
        async with self.runtime.db.sessions() as session:
            return list(
                await session.scalars(
                    select(DoorKnockTask)
                    .where(DoorKnockTask.warning_id == warning_id)
                    .order_by(DoorKnockTask.id)
                )
            )

    async def responder_id(self, who: str) -> int:
        async with self.runtime.db.sessions() as session:
            found = await session.scalar(select(Responder.id).where(Responder.external_id == who))
            assert found is not None
            return int(found)

    async def steps(self, call_id: int) -> list[str]:
        """The ladder steps applied to a call, in order."""
        async with self.runtime.db.sessions() as session:
            details = await session.scalars(
                select(AuditEvent.detail)
                .where(AuditEvent.call_id == call_id, AuditEvent.kind == "call.escalated")
                .order_by(AuditEvent.id)
            )
            return [str(detail["kind"]) for detail in details]


async def open_county(runtime: Runtime, clock: ManualClock, tmp_path: Path) -> County:
    directory = tmp_path / "directory"
    directory.mkdir()
    files = {"regions": REGIONS, "responders": RESPONDERS, "households": HOUSEHOLDS}
    for name, text in files.items():
        (directory / f"{name}.csv").write_text(text, encoding="utf-8")
    async with runtime.db.transaction() as session:
        await import_directory(session, directory)
    transport = httpx.ASGITransport(app=create_app(runtime))
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    await sign_in(client, runtime)
    return County(runtime, clock, client)


@pytest.fixture
async def county(runtime: Runtime, clock: ManualClock, tmp_path: Path) -> AsyncIterator[County]:
    """The scenario county on the test's back end; import this fixture into a test module."""
    scenario = await open_county(runtime, clock, tmp_path)
    yield scenario
    await scenario.client.aclose()


@asynccontextmanager
async def county_with(
    backend: Backend, clock: ManualClock, tmp_path: Path, **overrides: Any
) -> AsyncIterator[County]:
    """The scenario county on a runtime with settings overridden (quiet hours, policies...)."""
    runtime = await open_runtime(
        make_settings(backend, **overrides), clock=clock, migrate=False, redis=backend.redis_handle
    )
    scenario = await open_county(runtime, clock, tmp_path)
    try:
        yield scenario
    finally:
        await scenario.client.aclose()
        await runtime.aclose()
