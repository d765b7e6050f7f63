"""End to end on each back end: import, post a signed CAP alert, answer, escalate."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import func, select

from dispatcher.app import create_app
from dispatcher.clock import ManualClock
from dispatcher.directory import import_directory
from dispatcher.models import Attempt, Call, DoorKnockTask, Responder, Warning
from dispatcher.runtime import Runtime
from dispatcher.security import make_link_token, sign_body
from dispatcher.worker import run_until_idle
from tests.auth import sign_in
from tests.conftest import SENDER_SECRET

REGIONS = """code,name,level,parent_code
441799000000,青溪县,county,
441799100000,城关镇,township,441799000000
441799100001,上坪村,village,441799100000
441799100002,下洞村,village,441799100000
"""
RESPONDERS = """id,name,phone,wecom_userid,role,region_codes,backup_id,supervisor_id
t1,王镇长,13900000001,,township_leader,441799100000,,
a1,张三,13900000011,u11,village_cadre,441799100001,a2,t1
a2,李四,13900000012,,village_cadre,441799100001,,t1
b1,赵五,13900000021,,grid_worker,441799100002,,t1
b2,钱六,13900000022,,grid_worker,441799100002,,t1
"""
SPEAKERS = """id,name,region_code,provider,address
s1,上坪村广播,441799100001,simulated,spk-1
"""


def cap(identifier: str, codes: list[str], sent: str = "2026-07-01T10:00:00+08:00") -> bytes:
    geocodes = "".join(
        f"<geocode><valueName>行政区划代码</valueName><value>{c}</value></geocode>" for c in codes
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
<identifier>{identifier}</identifier><sender>441799000000@cma.gov.cn</sender>
<sent>{sent}</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
<info><language>zh-CN</language><category>Met</category><event>暴雨</event>
<urgency>Immediate</urgency><severity>Extreme</severity><certainty>Observed</certainty>
<senderName>青溪县气象台</senderName><headline>青溪县气象台发布暴雨红色预警信号</headline>
<description>预计未来3小时降雨量将达100毫米以上。</description><instruction>立即转移危险区人员。</instruction>
<area><areaDesc>青溪县</areaDesc>{geocodes}</area></info></alert>""".encode()


def signed(body: bytes, clock: ManualClock, secret: str = SENDER_SECRET) -> dict[str, str]:
    ts = str(int(clock.now().timestamp()))
    return {
        "X-Jiaoying-Timestamp": ts,
        "X-Jiaoying-Signature": sign_body(secret, ts, body),
        "Content-Type": "application/cap+xml",
    }


async def setup_directory(runtime: Runtime, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    for name, text in (("regions", REGIONS), ("responders", RESPONDERS), ("speakers", SPEAKERS)):
        (tmp_path / "dir" / f"{name}.csv").write_text(text, encoding="utf-8")
    async with runtime.db.transaction() as session:
        await import_directory(session, tmp_path / "dir")


async def states(runtime: Runtime, warning_id: int) -> dict[str, str]:
    async with runtime.db.sessions() as session:
        rows = await session.execute(
            select(Responder.external_id, Call.state)
            .join(Call, Call.responder_id == Responder.id)
            .where(Call.warning_id == warning_id)
        )
        return dict(rows.all())


async def test_spine_end_to_end(runtime: Runtime, clock: ManualClock, tmp_path: Path) -> None:
    await setup_directory(runtime, tmp_path)
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await sign_in(client, runtime)
        body = cap("W1", ["441799100000"])
        response = await client.post("/api/v1/warnings", content=body, headers=signed(body, clock))
        assert response.status_code == 202, response.text
        data = response.json()
        # red policy (severity Extreme + 红色): all 5 roles, one speaker
        assert (data["calls"], data["broadcasts"], data["duplicate"]) == (5, 1, False)
        warning_id = data["id"]
        again = await client.post("/api/v1/warnings", content=body, headers=signed(body, clock))
        assert again.json() == {**data, "duplicate": True}

        await run_until_idle(runtime)
        async with runtime.db.sessions() as session:
            rows = await session.execute(
                select(Attempt.channel, Attempt.status, func.count())
                .where(Attempt.warning_id == warning_id)
                .group_by(Attempt.channel, Attempt.status)
            )
            # 5 people × sms + voice, plus wechat for a1; simulated robocalls go unanswered
            assert {(c, s): n for c, s, n in rows} == {
                ("sms", "delivered"): 5,
                ("wechat", "delivered"): 1,
                ("voice", "no_answer"): 5,
            }
        assert set((await states(runtime, warning_id)).values()) == {"calling"}

        # 张三 answers by SMS reply, 赵五 by link, 钱六 asks for help by SMS
        r = await client.post("/hooks/sms/inbound", data={"From": "+8613900000011", "Body": "收到"})
        assert r.status_code == 200
        token = make_link_token(runtime.settings.app.secret_key, "a", await call_id(runtime, "b1"))
        page = await client.get(f"/a/{token}")
        assert page.status_code == 200 and "已记录" in page.text
        await client.post("/hooks/sms/inbound", data={"From": "13900000022", "Body": "２ 求助"})
        unknown = await client.post("/hooks/sms/inbound", data={"From": "13911112222", "Body": "1"})
        assert unknown.status_code == 200
        await run_until_idle(runtime)
        assert await states(runtime, warning_id) == {
            "t1": "calling",
            "a1": "answered",
            "a2": "calling",
            "b1": "answered",
            "b2": "answered",
        }

        # the ladder: call again at 5, backup at 10, supervisor at 15, door knock at 20
        for minutes, expected_step in ((5, 1), (5, 2), (5, 3), (5, 4)):
            clock.advance(minutes=minutes)
            from dispatcher.escalation import sweep

            await sweep(runtime)
            await run_until_idle(runtime)
            async with runtime.db.sessions() as session:
                steps = set(
                    await session.scalars(
                        select(Call.escalation_step).where(
                            Call.warning_id == warning_id,
                            Call.origin == "duty",
                            Call.state != "answered",
                        )
                    )
                )
            assert steps == {expected_step}
        summary = (await client.get(f"/api/v1/warnings/{warning_id}")).json()
        assert summary["calls"]["answered"] == 3
        assert summary["calls"]["unanswered"] == 2
        assert summary["calls"]["help"] == 1
        assert summary["answer_rate"] == 0.6
        async with runtime.db.sessions() as session:
            tasks = list(
                await session.scalars(
                    select(DoorKnockTask).where(
                        DoorKnockTask.warning_id == warning_id, DoorKnockTask.reason == "silent"
                    )
                )
            )
            # a2 (上坪村) silent: assigned to 张三, who answered in the same village
            assignees = {t.assignee_id for t in tasks}
            a1 = await session.scalar(select(Responder.id).where(Responder.external_id == "a1"))
            assert a1 in assignees
            purposes = set(
                await session.scalars(
                    select(Attempt.purpose).where(Attempt.warning_id == warning_id)
                )
            )
            assert {"call", "notice", "task"} <= purposes
        calls = (await client.get(f"/api/v1/warnings/{warning_id}/calls")).json()
        assert len(calls) == 5 and all(c["attempts"] for c in calls)
        page = await client.get("/dashboard")
        assert page.status_code == 200 and "60.0%" in page.text
        page = await client.get(f"/warnings/{warning_id}")
        assert page.status_code == 200 and "王镇长" in page.text and "60.0%" in page.text


async def call_id(runtime: Runtime, external_id: str) -> int:
    async with runtime.db.sessions() as session:
        return int(
            await session.scalar(
                select(Call.id)
                .join(Responder, Responder.id == Call.responder_id)
                .where(Responder.external_id == external_id)
            )
        )


async def test_bad_input_stores_nothing(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    await setup_directory(runtime, tmp_path)
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        body = cap("W2", ["441799100000"])
        wrong = signed(body, clock, secret="not-the-secret")
        assert (
            await client.post("/api/v1/warnings", content=body, headers=wrong)
        ).status_code == 401
        stale = signed(body, clock)
        stale["X-Jiaoying-Timestamp"] = str(int(clock.now().timestamp()) - 301)
        stale["X-Jiaoying-Signature"] = sign_body(
            SENDER_SECRET, stale["X-Jiaoying-Timestamp"], body
        )
        r = await client.post("/api/v1/warnings", content=body, headers=stale)
        assert r.status_code == 401 and "stale" in r.json()["detail"]
        bad = b"<alert><identifier>x</alert>"
        assert (
            await client.post("/api/v1/warnings", content=bad, headers=signed(bad, clock))
        ).status_code == 400
        xxe = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><alert>&x;</alert>'
        r = await client.post("/api/v1/warnings", content=xxe, headers=signed(xxe, clock))
        assert r.status_code == 400
        async with runtime.db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Warning)) == 0
        unknown = cap("W3", ["999999999999"])
        r = await client.post("/api/v1/warnings", content=unknown, headers=signed(unknown, clock))
        assert r.status_code == 202 and r.json()["calls"] == 0
        assert any("999999999999" in n for n in r.json()["notes"])
        r = await client.post("/hooks/sms/inbound", data={"Body": "1"})
        assert r.status_code == 400
