"""A +86 county end to end: Aliyun and Tencent texts, Aliyun calls, WeCom cards, Twilio abroad.

A red warning goes out; mainland texts go to Aliyun (and to Tencent for a number Aliyun
flow-controls), mainland calls to Aliyun, cards to WeCom, the one US number to Twilio.
Then a reply comes back through `SmsUp`, a keypress through `VoiceReport` and a tap on
a WeCom card, each answering its own person's call.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from dispatcher.clock import ManualClock
from dispatcher.fanout import new_attempt
from dispatcher.models import Contact
from dispatcher.retries import Deferred
from dispatcher.sending import send_attempt
from dispatcher.worker import run_until_idle
from tests.conftest import Backend
from tests.domestic_world import ALIYUN_TOKEN, DomesticWorld, domestic_world
from tests.test_spine_e2e import cap, signed


async def post_warning(world: DomesticWorld, clock: ManualClock) -> None:
    body = cap("CN1", ["441799100000"])
    response = await world.client.post(
        "/api/v1/warnings", content=body, headers=signed(body, clock)
    )
    assert response.status_code == 202, response.text


def card_of(world: DomesticWorld, user: str) -> dict:
    return next(m for m in world.wecom.delivered if m["to"] == user)


async def test_a_mainland_county_answers_through_domestic_channels(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with domestic_world(backend, clock, tmp_path) as world:
        aliyun, tencent, wecom, twilio = world.aliyun, world.tencent, world.wecom, world.twilio
        aliyun.illegal_numbers = {"13900000041"}  # 孙七: not a number Aliyun takes
        aliyun.limited_numbers = {"13900000051"}  # 周八: flow-controlled at Aliyun
        aliyun.call_fate = {
            "13900000021": ("200000", "2"),  # 赵五 hears it and presses 2: help
            "13900000001": ("200002", ""),  # 王镇长 is busy
            "13900000011": ("200003", ""),  # 张三 does not pick up
        }
        await post_warning(world, clock)
        await run_until_idle(world.runtime)

        # --- routing: +86 to Aliyun (Tencent when Aliyun refuses), others to Twilio -------
        texts = {m["number"]: m["params"]["content"] for m in aliyun.messages}
        assert set(texts) == {"13900000001", "13900000011", "13900000021", "13900000031"}
        # replies come back through Aliyun: the text asks for one, with the link as well
        assert "回复1" in texts["13900000011"] and "/a/" in texts["13900000011"]
        assert [m["number"] for m in tencent.messages] == ["+8613900000051"]
        assert "回复1" in tencent.messages[0]["params"][0]
        assert {m["to"] for m in twilio.messages.values()} == {"+14155550101"}
        assert {c["to"] for c in twilio.calls.values()} == {"+14155550101"}
        called = {c["number"] for c in aliyun.calls}
        assert called == {"13900000001", "13900000011", "13900000021", "13900000031"}
        assert all(c["play_times"] == "2" for c in aliyun.calls)

        e1 = await world.attempts_of("e1")
        assert [(a.provider, a.status, a.error_code) for a in e1["sms"]] == [
            ("aliyun", "failed", "isv.BUSINESS_LIMIT_CONTROL"),
            ("tencent", "sent", None),
        ]
        # no other voice provider for +86: the call waits for Aliyun's flow control to pass
        failed, retry = e1["voice"]
        assert (failed.provider, failed.error_code) == ("aliyun", "isv.BUSINESS_LIMIT_CONTROL")
        assert (retry.status, retry.try_number) == ("queued", 2) and retry.due_at > clock.now()
        d1 = await world.attempts_of("d1")
        assert (d1["sms"][0].status, d1["sms"][0].error_code) == (
            "failed",
            "isv.MOBILE_NUMBER_ILLEGAL",
        )
        async with world.runtime.db.sessions() as session:
            bad = await session.scalar(select(Contact.bad).where(Contact.value == "+8613900000041"))
            assert bad is True
        # the flow-controlled number says nothing of Aliyun's health
        assert await world.runtime.breakers.state("sms", "aliyun", clock.now()) == "closed"

        # WeCom: a card with buttons for the two members; 张三's userid is unknown to nobody
        card = card_of(world, "qianliu")["template_card"]
        assert card["card_type"] == "button_interaction"
        assert [b["key"] for b in card["button_list"]] == ["received", "help", "on_duty"]
        assert card["card_action"]["url"].startswith(world.app_url + "/a/")
        assert {m["to"] for m in wecom.delivered} == {"wangzz", "qianliu"}

        # --- receipts come back in each vendor's format -------------------------------------
        await aliyun.progress()
        await tencent.progress()
        assert aliyun.posted and all(
            (p.status, p.answer) == (200, '{"code":0,"msg":"接收成功"}') for p in aliyun.posted
        ), [(p.status, p.answer) for p in aliyun.posted]
        assert all(p.status == 200 and '"result": 0' in p.answer for p in tencent.posted)
        assert (await world.attempts_of("e1"))["sms"][1].status == "delivered"
        t1 = await world.attempts_of("t1")
        assert (t1["voice"][0].status, t1["voice"][0].provider_status) == ("busy", "200002")
        a1 = await world.attempts_of("a1")
        assert (a1["sms"][0].status, a1["voice"][0].status) == ("delivered", "no_answer")

        # the keypress in the VoiceReport answered 赵五's call: help
        b1 = await world.call_of("b1")
        assert (b1.state, b1.answer_meaning) == ("answered", "help")
        [answer] = await world.answers_of("b1")
        assert (answer.channel, answer.provider, answer.raw) == ("voice", "aliyun", "2")

        # --- a reply through SmsUp answers 张三's call -------------------------------------
        posted = await aliyun.reply("13900000011", "收到")
        assert posted.status == 200
        a1_call = await world.call_of("a1")
        assert (a1_call.state, a1_call.answer_meaning) == ("answered", "received")
        [answer] = await world.answers_of("a1")
        assert (answer.channel, answer.provider, answer.raw) == ("sms", "aliyun", "收到")

        # --- a tap on the WeCom card answers 钱六's call, after the token expired -----------
        wecom.expire_tokens()
        task_id = card["task_id"]
        tap = await wecom.tap("qianliu", task_id, "received")
        assert (tap.status, tap.answer) == (200, "")
        c1 = await world.call_of("c1")
        assert (c1.state, c1.answer_meaning) == ("answered", "received")
        [answer] = await world.answers_of("c1")
        assert (answer.channel, answer.provider) == ("wechat", "wecom")
        # the buttons turned into "已确认" with a token fetched again once
        assert [(u["task_id"], u["button"]["replace_name"]) for u in wecom.card_updates] == [
            (task_id, "已确认")
        ]
        assert wecom.gettoken_calls == 2
        # nobody else was answered by these
        assert (await world.call_of("t1")).state == "calling"
        assert (await world.call_of("e1")).state == "calling"

        # --- what went out afterwards: thanks to 张三, the help notice to 王镇长 -------------
        await run_until_idle(world.runtime)
        later = {m["number"]: m["params"]["content"] for m in aliyun.messages[4:]}
        assert "已记录您的回复" in later["13900000011"]
        assert "求助" in later["13900000001"]
        assert not wecom.dropped


async def test_domestic_callbacks_are_guarded(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    async with domestic_world(backend, clock, tmp_path) as world:
        report = [{"phone_number": "13900000011", "biz_id": "1^0", "success": True}]
        # no path token, a wrong one: refused before Aliyun's parser sees anything
        assert (await world.client.post("/hooks/sms/aliyun", json=report)).status_code == 403
        wrong = await world.client.post("/hooks/sms/aliyun/not-the-token-at-all", json=report)
        assert wrong.status_code == 403 and "path token" in wrong.json()["detail"]
        # the right token and a body that is not an Aliyun push: 400 naming the problem
        odd = await world.client.post(f"/hooks/sms/aliyun/{ALIYUN_TOKEN}", json=[{"x": 1}])
        assert odd.status_code == 400 and "SmsReport" in odd.json()["detail"]
        notjson = await world.client.post(f"/hooks/voice/aliyun/{ALIYUN_TOKEN}", content=b"<x/>")
        assert notjson.status_code == 400 and "JSON" in notjson.json()["detail"]
        # Twilio takes no path token
        assert (await world.client.post("/hooks/sms/twilio/abc")).status_code == 404

        # WeCom: the URL check answers the decrypted echostr; a forged tap is refused
        check = await world.wecom.check_url("echo-1234567")
        assert (check.status, check.answer) == (200, "echo-1234567")
        forged = await world.wecom.tap("qianliu", "jy-attempt-1-x", "received", tamper=True)
        assert forged.status == 403 and "msg_signature" in forged.answer
        unsigned = await world.client.post("/hooks/wechat/wecom", content=b"<xml/>")
        assert unsigned.status_code == 403


async def test_callbacks_only_from_allowed_addresses(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    overrides = {"callback_allow_ips": ["10.0.0.0/8"]}
    async with domestic_world(backend, clock, tmp_path, aliyun_extra=overrides) as world:
        refused = await world.aliyun.reply("13900000011", "1")
        assert refused.status == 403 and "127.0.0.1" in refused.answer


async def test_wecom_member_limits_are_kept_not_dropped(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    """WeCom drops the 31st message a minute to one member without a word: the core
    holds it back until the minute has passed instead."""
    async with domestic_world(backend, clock, tmp_path) as world:
        runtime = world.runtime
        async with runtime.db.transaction() as session:
            rows = [
                new_attempt(
                    call=None,
                    warning_id=None,
                    responder_id=None,
                    purpose="notice",
                    channel="wechat",
                    address="qianliu",
                    now=clock.now(),
                    body=f"通知{i}",
                )
                for i in range(32)
            ]
            session.add_all(rows)
            await session.flush()
            ids = [row.id for row in rows]
        outcomes = []
        for attempt_id in ids:
            try:
                outcomes.append(await send_attempt(runtime, attempt_id))
            except Deferred:
                outcomes.append("deferred")
        assert outcomes == ["sent"] * 30 + ["deferred"] * 2
        clock.advance(seconds=60)
        assert [await send_attempt(runtime, attempt_id) for attempt_id in ids[30:]] == [
            "sent",
            "sent",
        ]
        assert len(world.wecom.delivered) == 32 and not world.wecom.dropped


async def test_mainland_texts_go_out_many_to_a_request(
    backend: Backend, clock: ManualClock, tmp_path: Path
) -> None:
    """The core hands Aliyun its texts in batches: the call texts (each with its own link)
    share SendBatchSms requests, the lifted notice (one text for all) SendSms; every
    receipt and reply still finds its own person's send."""
    async with domestic_world(backend, clock, tmp_path) as world:
        aliyun = world.aliyun
        await post_warning(world, clock)
        await run_until_idle(world.runtime)

        mainland = {"13900000001", "13900000011", "13900000021", "13900000031"}
        mainland |= {"13900000041", "13900000051"}
        assert {m["number"] for m in aliyun.messages} == mainland
        texts = [a for a in aliyun.actions if a in ("SendSms", "SendBatchSms")]
        assert len(texts) < len(aliyun.messages)
        assert any(action == "SendBatchSms" and n > 1 for action, n in aliyun.sent)
        ids = []
        for person in ("t1", "a1", "b1", "c1", "d1", "e1"):
            [sms] = (await world.attempts_of(person))["sms"]
            assert (sms.provider, sms.status) == ("aliyun", "sent")
            ids.append(sms.provider_message_id)
        assert len(set(ids)) == len(ids)

        # receipts name the request's BizId and the number: each finds its own attempt
        aliyun.sms_fate = {"13900000021": (False, "MK:0001")}
        await aliyun.progress()
        statuses = {
            person: (await world.attempts_of(person))["sms"][0].status
            for person in ("t1", "a1", "b1", "c1", "d1", "e1")
        }
        assert statuses == {
            "t1": "delivered",
            "a1": "delivered",
            "b1": "failed",
            "c1": "delivered",
            "d1": "delivered",
            "e1": "delivered",
        }
        # a reply to a batched text answers that person's call
        await aliyun.reply("13900000031", "1")
        call = await world.call_of("c1")
        assert (call.state, call.answer_meaning) == ("answered", "received")
        assert (await world.call_of("d1")).state == "calling"
        await run_until_idle(world.runtime)  # the thanks to 钱六

        # the warning is lifted: one text for everyone called, sent together
        sent_before = len(aliyun.sent)
        body = cap("CN1", ["441799100000"]).replace(
            b"<msgType>Alert</msgType>", b"<msgType>Cancel</msgType>"
        )
        body = body.replace(
            b"<scope>Public</scope>",
            b"<scope>Public</scope><references>441799000000@cma.gov.cn,CN1,"
            b"2026-07-01T10:00:00+08:00</references>",
        ).replace(b"<identifier>CN1</identifier>", b"<identifier>CN1-C</identifier>")
        response = await world.client.post(
            "/api/v1/warnings", content=body, headers=signed(body, clock)
        )
        assert response.status_code == 202, response.text
        await run_until_idle(world.runtime)
        lifted = [m for m in aliyun.messages if "预警解除" in m["params"]["content"]]
        assert {m["number"] for m in lifted} <= mainland and len(lifted) > 1
        assert aliyun.sent[sent_before:] == [("SendSms", len(lifted))]
