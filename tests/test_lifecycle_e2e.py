"""End to end on each back end: Update and Cancel sequences, drills, statuses and expiry.

Uses the spine's small directory: 城关镇 (t1 王镇长) with 上坪村 (a1 张三, a2 李四, a
speaker) and 下洞村 (b1 赵五, b2 钱六).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from dispatcher.app import create_app
from dispatcher.clock import ManualClock
from dispatcher.escalation import sweep
from dispatcher.models import Attempt, Broadcast, Call, DoorKnockTask, Responder, Warning
from dispatcher.runtime import Runtime
from dispatcher.security import make_link_token
from dispatcher.worker import run_until_idle
from tests.auth import sign_in
from tests.test_spine_e2e import setup_directory, signed

SENDER = "441799000000@cma.gov.cn"
RED_ID = "44179941600000_20260701100000_0"


def alert(
    identifier: str,
    *,
    msg_type: str = "Alert",
    status: str = "Actual",
    colour: str = "红色",
    codes: tuple[str, ...] = ("441799100000",),
    references: tuple[str, ...] = (),
    expires: str = "2026-07-02T10:00:00+08:00",
    headline: str | None = None,
) -> bytes:
    refs = " ".join(f"{SENDER},{ref},2026-07-01T10:00:00+08:00" for ref in references)
    geocodes = "".join(
        f"<geocode><valueName>行政区划代码</valueName><value>{c}</value></geocode>" for c in codes
    )
    verb = {"Alert": "发布", "Update": "更新", "Cancel": "解除"}[msg_type]
    headline = headline or f"青溪县气象台{verb}暴雨{colour}预警信号"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
<identifier>{identifier}</identifier><sender>{SENDER}</sender>
<sent>2026-07-01T10:00:00+08:00</sent><status>{status}</status><msgType>{msg_type}</msgType>
<scope>Public</scope>{f"<references>{refs}</references>" if refs else ""}
<info><language>zh-CN</language><category>Met</category><event>暴雨</event>
<urgency>Immediate</urgency><severity>Severe</severity><certainty>Observed</certainty>
<expires>{expires}</expires>
<senderName>青溪县气象台</senderName><headline>{headline}</headline>
<description>预计未来3小时城关镇降雨量将达50毫米以上。</description>
<instruction>立即转移危险区人员。</instruction>
<area><areaDesc>城关镇</areaDesc>{geocodes}</area></info></alert>""".encode()


async def post(client: httpx.AsyncClient, clock: ManualClock, body: bytes) -> httpx.Response:
    return await client.post("/api/v1/warnings", content=body, headers=signed(body, clock))


async def calls_of(runtime: Runtime, warning_id: int) -> dict[str, Call]:
    async with runtime.db.sessions() as session:
        rows = await session.execute(
            select(Responder.external_id, Call)
            .join(Call, Call.responder_id == Responder.id)
            .where(Call.warning_id == warning_id)
        )
        return {external_id: call for external_id, call in rows.all()}


async def sms_bodies(runtime: Runtime, warning_id: int, purpose: str) -> dict[str, list[str]]:
    """Responder external id -> texts sent by SMS for this warning with this purpose."""
    async with runtime.db.sessions() as session:
        rows = await session.execute(
            select(Responder.external_id, Attempt.body)
            .join(Attempt, Attempt.responder_id == Responder.id)
            .where(
                Attempt.warning_id == warning_id,
                Attempt.purpose == purpose,
                Attempt.channel == "sms",
                Attempt.status.in_(["sent", "delivered"]),
            )
            .order_by(Attempt.id)
        )
        found: dict[str, list[str]] = {}
        for external_id, body in rows:
            found.setdefault(external_id, []).append(body or "")
        return found


async def warning_row(runtime: Runtime, warning_id: int) -> Warning:
    async with runtime.db.sessions() as session:
        warning = await session.get(Warning, warning_id)
        assert warning is not None
        return warning


@asynccontextmanager
async def client_for(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app, logged in as an admin (the read routes need a login)."""
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await sign_in(client, runtime)
        yield client


async def test_update_keeps_answers_unless_the_level_rises_then_cancel_lifts_it(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    await setup_directory(runtime, tmp_path)
    async with client_for(runtime) as client:
        first = (await post(client, clock, alert(RED_ID, colour="橙色"))).json()
        assert (first["level"], first["calls"]) == ("orange", 5)
        await run_until_idle(runtime)
        await client.post("/hooks/sms/inbound", data={"From": "+8613900000011", "Body": "收到"})
        await client.post("/hooks/sms/inbound", data={"From": "+8613900000021", "Body": "1"})
        await run_until_idle(runtime)

        # 1. an Update at the same level: answers kept, the rest called with the update text
        clock.advance(minutes=3)
        body = alert("U1", msg_type="Update", colour="橙色", references=(RED_ID,))
        second = (await post(client, clock, body)).json()
        assert second["calls"] == 5
        assert any("supersedes warning" in note for note in second["notes"])
        await run_until_idle(runtime)
        assert (await warning_row(runtime, first["id"])).state == "superseded"
        old = await calls_of(runtime, first["id"])
        assert {k: c.state for k, c in old.items()} == {
            "t1": "superseded",
            "a1": "answered",
            "a2": "superseded",
            "b1": "answered",
            "b2": "superseded",
        }
        new = await calls_of(runtime, second["id"])
        assert {k for k, c in new.items() if c.state == "answered"} == {"a1", "b1"}
        assert new["a1"].previous_call_id == old["a1"].id
        assert new["a1"].answered_at == old["a1"].answered_at
        assert new["a2"].state == "calling" and new["a2"].escalation_step == 0
        notices = await sms_bodies(runtime, second["id"], "notice")
        assert set(notices) == {"a1", "b1"}
        assert notices["a1"][0].startswith("【叫应·预警更新】青溪县气象台更新暴雨橙色预警信号")
        assert "无需再次回复" in notices["a1"][0]
        asks = await sms_bodies(runtime, second["id"], "call")
        assert set(asks) == {"t1", "a2", "b2"}
        assert (
            asks["a2"][0].startswith("【叫应·预警更新】") and "回复1确认收到更新" in asks["a2"][0]
        )

        # 李四 taps the link of the first message: it counts for the update (same level)
        token = make_link_token(runtime.settings.app.secret_key, "a", old["a2"].id)
        assert (await client.get(f"/a/{token}")).status_code == 200
        assert (await calls_of(runtime, second["id"]))["a2"].state == "answered"
        assert (await calls_of(runtime, first["id"]))["a2"].state == "superseded"

        # 王镇长 stays silent on the orange update until its ladder opens a door-knock task
        for _ in range(4):
            clock.advance(minutes=15)
            await sweep(runtime)
            await run_until_idle(runtime)
        async with runtime.db.sessions() as session:
            orange_tasks = list(
                await session.scalars(
                    select(DoorKnockTask.id).where(DoorKnockTask.warning_id == second["id"])
                )
            )
        assert orange_tasks

        # 2. the level rises to red: everyone answers again under the red policy
        clock.advance(minutes=3)
        body = alert("U2", msg_type="Update", colour="红色", references=("U1",))
        third = (await post(client, clock, body)).json()
        assert (third["level"], third["calls"]) == ("red", 5)
        await run_until_idle(runtime)
        raised = await calls_of(runtime, third["id"])
        assert {c.state for c in raised.values()} == {"calling"}
        # the level rose: a tap on the orange update's link does not answer the red one
        token = make_link_token(runtime.settings.app.secret_key, "a", new["b2"].id)
        assert (await client.get(f"/a/{token}")).status_code == 200
        assert (await calls_of(runtime, third["id"]))["b2"].state == "calling"
        assert set(await sms_bodies(runtime, third["id"], "call")) == {
            "t1",
            "a1",
            "a2",
            "b1",
            "b2",
        }

        # 3. silence runs the red ladder to door-knock tasks; 张三 answers on the way
        await client.post("/hooks/sms/inbound", data={"From": "+8613900000011", "Body": "1"})
        for _ in range(4):
            clock.advance(minutes=5)
            await sweep(runtime)
            await run_until_idle(runtime)
        async with runtime.db.sessions() as session:
            tasks = list(
                await session.scalars(
                    select(DoorKnockTask).where(DoorKnockTask.warning_id == third["id"])
                )
            )
        assert tasks and {t.status for t in tasks} == {"open"}

        # 4. a Cancel naming the first warning lifts the chain's current head
        clock.advance(minutes=1)
        cancel = (
            await post(
                client,
                clock,
                alert("C1", msg_type="Cancel", colour="红色", references=(RED_ID,)),
            )
        ).json()
        assert cancel["calls"] == 0
        assert any(f"cancelled warning {third['id']}" in note for note in cancel["notes"])
        await run_until_idle(runtime)
        assert (await warning_row(runtime, third["id"])).state == "cancelled"
        after = await calls_of(runtime, third["id"])
        assert {c.state for k, c in after.items() if k != "a1"} <= {"cancelled", "unanswered"}
        assert after["a1"].state == "answered"
        async with runtime.db.sessions() as session:
            statuses = set(
                await session.scalars(
                    select(DoorKnockTask.status).where(DoorKnockTask.warning_id == third["id"])
                )
            )
            queued = await session.scalar(
                select(Attempt.id).where(
                    Attempt.warning_id == third["id"], Attempt.status == "queued"
                )
            )
            broadcast_states = set(
                await session.scalars(
                    select(Broadcast.status).where(Broadcast.warning_id == third["id"])
                )
            )
        assert statuses == {"cancelled"}
        async with runtime.db.sessions() as session:
            earlier = set(
                await session.scalars(
                    select(DoorKnockTask.status).where(DoorKnockTask.id.in_(orange_tasks))
                )
            )
        assert earlier == {"cancelled"}  # tasks of the superseded update are lifted too
        assert queued is None
        assert "queued" not in broadcast_states
        lifted = await sms_bodies(runtime, cancel["id"], "notice")
        assert set(lifted) == {"t1", "a1", "a2", "b1", "b2"}
        assert lifted["a1"][0].startswith("【叫应·预警解除】青溪县气象台解除暴雨红色预警信号")
        # nothing escalates any more
        clock.advance(minutes=30)
        assert (await sweep(runtime)).steps == 0
        summary = (await client.get(f"/api/v1/warnings/{third['id']}")).json()
        assert summary["state"] == "cancelled"
        assert summary["door_knock_tasks"]["cancelled"] == len(tasks)


async def test_a_code_from_the_first_message_answers_a_same_level_update(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    await setup_directory(runtime, tmp_path)
    async with client_for(runtime) as client:
        first = (await post(client, clock, alert(RED_ID, colour="橙色"))).json()
        other = (await post(client, clock, alert("W2", colour="黄色"))).json()
        await run_until_idle(runtime)
        code = (await calls_of(runtime, first["id"]))["b2"].code
        assert code and code != (await calls_of(runtime, other["id"]))["b2"].code

        clock.advance(minutes=3)
        body = alert("U1", msg_type="Update", colour="橙色", references=(RED_ID,))
        update = (await post(client, clock, body)).json()
        await run_until_idle(runtime)
        assert (await calls_of(runtime, update["id"]))["b2"].code == code

        # 钱六 answers the code printed in the first message: the update's call, not the other
        reply = {"From": "+8613900000022", "Body": f"1 {code}"}
        assert (await client.post("/hooks/sms/inbound", data=reply)).status_code == 200
        assert (await calls_of(runtime, update["id"]))["b2"].state == "answered"
        assert (await calls_of(runtime, other["id"]))["b2"].state == "calling"


async def test_references_to_unknown_warnings_are_stored_and_reported(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    await setup_directory(runtime, tmp_path)
    async with client_for(runtime) as client:
        cancel = await post(client, clock, alert("C9", msg_type="Cancel", references=("nope",)))
        assert cancel.status_code == 202
        assert f"reference to unknown warning {SENDER},nope" in cancel.json()["notes"]
        update = (
            await post(client, clock, alert("U9", msg_type="Update", references=("nope",)))
        ).json()
        assert update["calls"] == 5
        assert "update called as a new warning" in update["notes"]
        stored = (await client.get("/api/v1/warnings")).json()
        assert {w["identifier"] for w in stored} == {"C9", "U9"}


async def test_a_drill_is_marked_and_counted_apart(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    await setup_directory(runtime, tmp_path)
    async with client_for(runtime) as client:
        drill = (await post(client, clock, alert("D1", status="Exercise"))).json()
        real = (await post(client, clock, alert("R1", colour="黄色"))).json()
        assert drill["drill"] is True and drill["calls"] == 5
        await run_until_idle(runtime)
        texts = await sms_bodies(runtime, drill["id"], "call")
        assert all(
            text.startswith("【叫应】【演练】") for bodies in texts.values() for text in bodies
        )
        assert not any(
            "演练" in t
            for bodies in (await sms_bodies(runtime, real["id"], "call")).values()
            for t in bodies
        )
        async with runtime.db.sessions() as session:
            voice = await session.scalar(
                select(Attempt.body).where(
                    Attempt.warning_id == drill["id"], Attempt.channel == "voice"
                )
            )
        assert voice is not None and "【演练】" in voice
        await client.post("/hooks/sms/inbound", data={"From": "+8613900000011", "Body": "1"})
        drills = (await client.get("/api/v1/warnings/totals?drill=true")).json()
        reals = (await client.get("/api/v1/warnings/totals")).json()
        assert (drills["warnings"], drills["calls"]["total"]) == (1, 5)
        assert (reals["warnings"], reals["calls"]["total"]) == (1, 5)
        assert drills["answers"] + reals["answers"] == 2  # a bare "1" answers both calls
        listed = (await client.get("/api/v1/warnings?drill=false")).json()
        assert [w["identifier"] for w in listed] == ["R1"]
        page = (await client.get("/dashboard")).text
        drill_card = page.split(f'id="warning-{drill["id"]}"')[1].split('id="warning-')[0]
        assert '<span class="drill">演练</span>' in drill_card
        real_card = page.split(f'id="warning-{real["id"]}"')[1].split('id="warning-')[0]
        assert "演练" not in real_card


async def test_test_system_and_draft_call_nobody(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    await setup_directory(runtime, tmp_path)
    async with client_for(runtime) as client:
        for status in ("Test", "System", "Draft"):
            result = (await post(client, clock, alert(f"S-{status}", status=status))).json()
            assert result["calls"] == 0 and result["broadcasts"] == 0
            assert f"status {status}: stored, nobody called" in result["notes"]
        real = (await post(client, clock, alert("REAL"))).json()
        test_cancel = (
            await post(
                client, clock, alert("TC", status="Test", msg_type="Cancel", references=("REAL",))
            )
        ).json()
        assert "status Test: stored, nothing cancelled" in test_cancel["notes"]
        drill_cancel = (
            await post(
                client,
                clock,
                alert("XC", status="Exercise", msg_type="Cancel", references=("REAL",)),
            )
        ).json()
        assert any("ignored by a Exercise message" in n for n in drill_cancel["notes"])
        assert (await warning_row(runtime, real["id"])).state == "active"


async def test_expiry_refused_on_arrival_and_swept_while_active(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    await setup_directory(runtime, tmp_path)
    async with client_for(runtime) as client:
        # the clock is 2026-07-01T02:00Z, i.e. 10:00 in China
        late = await post(client, clock, alert("OLD", expires="2026-07-01T09:59:00+08:00"))
        assert late.status_code == 422
        assert late.json()["field"] == "/alert/info/expires"
        assert "expired at 2026-07-01T09:59:00+08:00" in late.json()["detail"]
        soon = (
            await post(client, clock, alert("SOON", expires="2026-07-01T10:12:00+08:00"))
        ).json()
        await run_until_idle(runtime)
        clock.advance(minutes=6)
        await sweep(runtime)  # red ladder: call again at 5 min
        clock.advance(minutes=7)
        report = await sweep(runtime)
        assert report.expired == 1 and report.steps == 0
        assert (await warning_row(runtime, soon["id"])).state == "expired"
        calls = await calls_of(runtime, soon["id"])
        assert {c.state for c in calls.values()} == {"expired"}
        assert all(c.next_step_at is None for c in calls.values())
        async with runtime.db.sessions() as session:
            queued = await session.scalar(
                select(Attempt.id).where(
                    Attempt.warning_id == soon["id"], Attempt.status == "queued"
                )
            )
        assert queued is None
        clock.advance(minutes=30)
        assert (await sweep(runtime)).steps == 0
        page = (await client.get("/dashboard")).text
        assert "已过期" in page


async def test_raw_payload_is_kept_byte_for_byte(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    from dispatcher.cap import parse_warning

    fixture = Path(__file__).parent / "fixtures" / "cap" / "qingxi-cold-wave-blue-gb2312.xml"
    body = fixture.read_bytes()
    await setup_directory(runtime, tmp_path)
    clock.set(parse_warning(body, None).sent)
    async with client_for(runtime) as client:
        accepted = (await post(client, clock, body)).json()
        assert accepted["level"] == "blue" and accepted["calls"] == 4  # 6-digit county code
        raw = await client.get(f"/api/v1/warnings/{accepted['id']}/raw")
        assert raw.content == body
        assert raw.headers["content-type"].startswith("application/cap+xml")
        assert parse_warning(raw.content, raw.headers["content-type"]) == parse_warning(body, None)


async def test_every_shared_sample_is_accepted(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    from dispatcher.cap import parse_warning
    from tests.test_cap import SAMPLE_EXPECTATIONS, SAMPLES

    samples = sorted(SAMPLES.glob("*.xml"))
    assert len(samples) == len(SAMPLE_EXPECTATIONS) == 10
    await setup_directory(runtime, tmp_path)
    async with client_for(runtime) as client:
        for path in samples:
            body = path.read_bytes()
            clock.set(parse_warning(body, None).sent)  # their dates are in the past
            response = await post(client, clock, body)
            assert response.status_code == 202, (path.name, response.text)
            data: dict[str, Any] = response.json()
            assert data["calls"] == 0, path.name  # none of their areas is in 青溪县
