"""The real `twilio` library against a fake Twilio server that calls back, end to end.

A red warning goes out by SMS and robocall; the fake delivers, fails, rings, answers
and presses keys; its signed callbacks come back over HTTP and move attempts and calls.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from dispatcher.clock import ManualClock
from dispatcher.escalation import sweep
from dispatcher.models import Answer, Contact
from dispatcher.worker import run_until_idle
from tests.conftest import Backend
from tests.fakes.twilio_api import CallFate, twilio_signature
from tests.test_spine_e2e import cap, signed
from tests.twilio_world import World, twilio_world


async def post_warning(world: World, clock: ManualClock, identifier: str = "TW1") -> int:
    body = cap(identifier, ["441799100000"])
    response = await world.client.post(
        "/api/v1/warnings", content=body, headers=signed(body, clock)
    )
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


async def test_sms_and_voice_through_twilio(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with twilio_world(backend, clock, tmp_path) as world:
        fake = world.fake
        fake.call_fate = {
            "+8613900000011": CallFate("answer", ["9", "1"]),  # 张三 hears it again, then 1
            "+14155550101": CallFate("no-answer"),
            "+8613900000021": CallFate("machine"),
            "+8613900000001": CallFate("busy"),
        }
        fake.sms_fate = {"+8613900000021": ("undelivered", "30005")}  # 赵五: dead number
        await post_warning(world, clock)
        await run_until_idle(world.runtime)

        texts = {m["to"]: m["body"] for m in fake.messages.values()}
        assert set(texts) == {"+8613900000001", "+8613900000011", "+14155550101", "+8613900000021"}
        # mainland: no reply can come back through Twilio, so the link and no "reply 1"
        assert "/a/" in texts["+8613900000011"] and "回复1" not in texts["+8613900000011"]
        assert "回复1" in texts["+14155550101"] and "/a/" in texts["+14155550101"]
        calls = {c["to"]: c for c in fake.calls.values()}
        twiml = calls["+8613900000011"]["_twiml"]
        assert '<Gather action="' in twiml and 'numDigits="1"' in twiml
        assert twiml.count('<Say language="zh-CN">') == 2 and twiml.endswith(
            "<Hangup /></Response>"
        )
        assert "/hooks/voice/twilio?token=" in calls["+8613900000011"]["_status_callback"]
        assert calls["+8613900000011"]["_machine_detection"] == "Enable"

        await fake.progress()
        assert fake.posted and all(p.status == 200 for p in fake.posted), [
            (p.status, p.body) for p in fake.posted if p.status != 200
        ]
        replay, thanks = calls["+8613900000011"]["_responses"]
        assert "<Gather" in replay and "再为您播放一遍" in replay and "暴雨红色预警" in replay
        assert "已确认收到" in thanks and "<Gather" not in thanks

        a1 = await world.call_of("a1")
        assert a1.state == "answered" and a1.answer_meaning == "received"
        async with world.runtime.db.sessions() as session:
            answer = await session.scalar(select(Answer).where(Answer.call_id == a1.id))
            assert answer is not None and (answer.channel, answer.raw) == ("voice", "1")
        a1_attempts = await world.attempts_of("a1")
        voice = a1_attempts["voice"][0]
        assert (voice.status, voice.provider, voice.provider_status) == (
            "delivered",
            "twilio",
            "completed",
        )
        assert voice.provider_message_id.startswith("CA") and voice.reported_at == clock.now()
        assert a1_attempts["sms"][0].status == "delivered"

        b1 = await world.attempts_of("b1")
        assert (b1["sms"][0].status, b1["sms"][0].error_code) == ("failed", "30005")
        assert b1["sms"][0].provider_status == "undelivered"
        assert (b1["voice"][0].status, b1["voice"][0].provider_status) == (
            "no_answer",
            "machine_start",
        )
        async with world.runtime.db.sessions() as session:
            bad = await session.scalar(select(Contact.bad).where(Contact.value == "+8613900000021"))
            assert bad is True
        t1 = await world.attempts_of("t1")
        assert (t1["voice"][0].status, t1["sms"][0].status) == ("busy", "delivered")
        # nothing can reach 赵五 (dead number, a machine): the sweep moves his ladder on now;
        # 王镇长 was busy but his text was delivered
        await sweep(world.runtime)
        assert await world.undeliverable() == {"b1"}

        # 李四 (a US number) answers by SMS reply; he gets a thank-you through Twilio
        posted = await fake.send_sms("+14155550101", "1")
        assert posted.status == 200 and "<Response/>" in posted.body
        assert (await world.call_of("u1")).state == "answered"
        await run_until_idle(world.runtime)
        reply = [m for m in fake.messages.values() if m["to"] == "+14155550101"][-1]
        assert "已记录您的回复" in reply["body"]

        metrics = await world.client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        lines = set(metrics.text.splitlines())
        assert {
            'jiaoying_warnings{state="active"} 1',
            'jiaoying_calls{state="answered"} 2',
            'jiaoying_attempts{channel="voice",provider="twilio",status="busy"} 1',
            'jiaoying_attempts{channel="sms",provider="twilio",status="failed"} 1',
            "jiaoying_answer_latency_seconds_count 2",
            'jiaoying_provider_circuit_state{channel="voice",provider="twilio",state="closed"} 1',
            "jiaoying_queue_depth 0",
        } <= lines, metrics.text


async def test_twilio_callbacks_are_verified(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with twilio_world(backend, clock, tmp_path) as world:
        fake = world.fake
        params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered", "AccountSid": "AC1"}
        unsigned = await fake.post(world.hook("sms"), params, signature="")
        assert unsigned.status == 403 and "missing X-Twilio-Signature" in unsigned.body
        forged = twilio_signature("not-the-token", world.hook("sms"), params)
        wrong = await fake.post(world.hook("sms"), params, signature=forged)
        assert wrong.status == 403 and "does not match" in wrong.body
        # signed for another URL (a replay to another hook) is refused too
        elsewhere = twilio_signature(fake.auth_token, world.hook("voice"), params)
        assert (await fake.post(world.hook("sms"), params, signature=elsewhere)).status == 403

        # a receipt for a send not (yet) recorded: 503, so Twilio posts it again
        early = await fake.post(world.hook("sms") + "#rc=2&rp=5xx", params)
        assert (early.status, early.tries) == (503, 3)
        # a bad hook token is refused before any provider looks at it
        r = await world.client.post("/hooks/sms/twilio?token=nope", data=params)
        assert r.status_code == 403
        # a signed request that is not a Twilio callback at all: 400 naming the problem
        odd = await fake.post(world.hook("voice"), {"Foo": "bar"})
        assert odd.status == 400 and "CallSid" in odd.body
