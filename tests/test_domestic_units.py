"""Domestic providers in isolation: signatures against the vendors' own code, error
meanings, callback parsing, WeCom's token cache and crypto, per-recipient limits."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from wechatpy.enterprise.crypto import WeChatCrypto

from channels.aliyun_common import canonical_query, sign_headers
from channels.aliyun_sms import AliyunSmsProvider
from channels.aliyun_voice import AliyunVoiceProvider
from channels.base import (
    CallbackRejected,
    CallbackRequest,
    Channel,
    DeliveryReport,
    DirectReply,
    Handshake,
    InboundText,
    Message,
    ProviderContext,
    SendError,
)
from channels.tencent_sms import TencentSmsProvider, tc3_authorization
from channels.wecom import WeComProvider
from channels.wecom_crypto import CryptoError, WeComCrypto
from dispatcher.runtime import Runtime
from tests.fakes.aliyun_api import sdk_authorization
from tests.fakes.serving import serve
from tests.fakes.tencent_api import FakeTencent, verify_tc3
from tests.fakes.wecom_api import FakeWeCom

ALIYUN = {
    "access_key_id": "LTAI5tFakeKeyId",
    "access_key_secret": "fake/secret+key",
    "sms_sign_name": "叫应平台",
    "sms_template_code": "SMS_1",
    "voice_tts_code": "TTS_1",
    "sms_base_url": "https://dysmsapi.aliyuncs.com",
    "voice_base_url": "https://dyvmsapi.aliyuncs.com",
}
TENCENT = {
    "secret_id": "AKIDfake",
    "secret_key": "fake-key",
    "sms_sdk_app_id": "1400000001",
    "sign_name": "叫应",
    "template_id": "1",
    "base_url": "https://sms.tencentcloudapi.com",
}
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


async def _never(request: CallbackRequest, delay_s: float) -> None:
    raise AssertionError("real providers do not schedule callbacks")


def context(
    handler: Any = None, transport: httpx.AsyncBaseTransport | None = None
) -> ProviderContext:
    http = httpx.AsyncClient(transport=transport or httpx.MockTransport(handler))
    return ProviderContext(
        http=http, callback_url="https://jy.example/hooks/x", schedule_callback=_never
    )


def message(to: str = "+8613900000011", channel: Channel = Channel.SMS, **extra: Any) -> Message:
    return Message(channel, to, "暴雨红色预警\n请回复1确认", "attempt:7", "responder:1", **extra)


def body_of(data: Any) -> CallbackRequest:
    return CallbackRequest(url="https://jy.example/hooks/x", body=json.dumps(data).encode())


# --- signatures, checked against the vendors' own code ----------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"PhoneNumbers": "13900000011", "SignName": "叫应平台", "TemplateCode": "SMS_1"},
        {
            "TemplateParam": json.dumps({"content": "暴雨 红色预警：请*立即*转移~ a+b=c&d"}),
            "OutId": "attempt:7",
            "PlayTimes": "2",
        },
    ],
)
def test_aliyun_signature_is_the_sdks(params: dict[str, str]) -> None:
    headers = sign_headers(
        method="POST",
        host="dysmsapi.aliyuncs.com",
        action="SendSms",
        version="2017-05-25",
        params=params,
        access_key_id="LTAI5tFakeKeyId",
        access_key_secret="fake/secret+key",
        now=datetime(2026, 7, 1, 2, 3, 4, tzinfo=UTC),
        nonce="3156853299f313e23d1673dc12e1703d",
    )
    assert headers["x-acs-date"] == "2026-07-01T02:03:04Z"
    signed = {k: v for k, v in headers.items() if k != "Authorization"}
    expected = sdk_authorization("POST", params, signed, "LTAI5tFakeKeyId", "fake/secret+key")
    assert headers["Authorization"] == expected
    assert "%20" in canonical_query({"a": "b c"}) and "~" in canonical_query({"a": "~"})


async def test_tencent_signature_is_the_sdks() -> None:
    """The official SDK sends a request to the fake; our signer, given what the SDK
    signed, computes the SDK's Authorization exactly, and the fake accepts both."""
    fake = FakeTencent()
    async with serve(fake.app) as url:
        profile = ClientProfile(
            httpProfile=HttpProfile(protocol="http", endpoint=url.removeprefix("http://"))
        )
        client = CommonClient(
            "sms",
            "2021-01-11",
            credential.Credential(fake.secret_id, fake.secret_key),
            "ap-guangzhou",
            profile=profile,
        )
        params = {
            "PhoneNumberSet": ["+8613900000011"],
            "SmsSdkAppId": fake.sdk_app_id,
            "TemplateId": fake.template_id,
            "SignName": fake.sign_name,
            "TemplateParamSet": ["暴雨红色预警"],
        }
        answer = await asyncio.to_thread(client.call_json, "SendSms", params)
        assert answer["Response"]["SendStatusSet"][0]["Code"] == "Ok"
        headers, body = fake.requests[-1]
        names = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        ours = tc3_authorization(
            secret_id=fake.secret_id,
            secret_key=fake.secret_key,
            signed={name: headers[name] for name in names},
            body=body,
            timestamp=int(headers["x-tc-timestamp"]),
        )
        assert ours == headers["authorization"]

        provider = TencentSmsProvider(
            {
                **TENCENT,
                "secret_id": fake.secret_id,
                "secret_key": fake.secret_key,
                "template_id": fake.template_id,
                "base_url": url,
            },
            context(transport=httpx.AsyncHTTPTransport()),
        )
        result = await provider.send(message())
        assert result.provider_message_id == fake.messages[-1]["sid"]
        sent_headers, sent_body = fake.requests[-1]
        assert "x-tc-action" in sent_headers["authorization"]
        assert verify_tc3(sent_headers, sent_body, fake.secret_id, fake.secret_key) == ""
        assert verify_tc3(sent_headers, sent_body + b" ", fake.secret_id, fake.secret_key)
        await provider._context.http.aclose()
    await fake.aclose()


def test_wecom_crypto_round_trip_with_wechatpy() -> None:
    ours = WeComCrypto("tok", AES_KEY, "wwcorp")
    theirs = WeChatCrypto("tok", AES_KEY, "wwcorp")
    xml = "<xml><Content><![CDATA[收到 ✓]]></Content></xml>"
    # ours -> theirs
    encrypted = ours.encrypt(xml)
    signature = ours.sign("1700000000", "nonce1", encrypted)
    assert theirs.check_signature(signature, "1700000000", "nonce1", encrypted) == xml
    # theirs -> ours
    packed = theirs.encrypt_message(xml, "nonce2", "1700000001")
    encrypt = packed.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    msg_signature = packed.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    ours.verify(msg_signature, "1700000001", "nonce2", encrypt)
    assert ours.decrypt(encrypt) == xml
    # refused: a wrong signature, another corp, another key, garbage
    with pytest.raises(CryptoError, match="msg_signature"):
        ours.verify(msg_signature, "1700000002", "nonce2", encrypt)
    with pytest.raises(CryptoError, match="another receiver"):
        WeComCrypto("tok", AES_KEY, "wwother").decrypt(encrypt)
    other_key = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
    with pytest.raises(CryptoError):
        WeComCrypto("tok", other_key, "wwcorp").decrypt(encrypt)
    with pytest.raises(CryptoError, match="base64"):
        ours.decrypt("not base64 at all!")
    with pytest.raises(ValueError, match="43"):
        WeComCrypto("tok", "short", "wwcorp")


# --- Aliyun -------------------------------------------------------------------------------


def aliyun_answer(code: str, status: int = 200, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"RequestId": "R1", "Code": code, "Message": "m", **extra})


@pytest.mark.parametrize(
    ("answer", "retryable", "contact_bad", "other_provider"),
    [
        (aliyun_answer("isv.BUSINESS_LIMIT_CONTROL"), True, False, True),
        (aliyun_answer("isv.AMOUNT_NOT_ENOUGH"), True, False, True),
        (aliyun_answer("isv.MOBILE_NUMBER_ILLEGAL"), False, True, False),
        (aliyun_answer("isv.SMS_TEMPLATE_ILLEGAL"), False, False, False),
        (aliyun_answer("SignatureDoesNotMatch", 400), True, False, False),
        (aliyun_answer("isp.SYSTEM_ERROR", 500), True, False, False),
        (httpx.Response(502, text="<html>bad gateway</html>"), True, False, False),
    ],
)
async def test_aliyun_business_codes_count_even_on_http_200(
    answer: httpx.Response, retryable: bool, contact_bad: bool, other_provider: bool
) -> None:
    provider = AliyunSmsProvider(ALIYUN, context(lambda request: answer))
    with pytest.raises(SendError) as raised:
        await provider.send(message())
    error = raised.value
    assert (error.retryable, error.contact_bad, error.other_provider) == (
        retryable,
        contact_bad,
        other_provider,
    )


async def test_aliyun_sends_the_text_in_the_template_and_reads_pushes() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return aliyun_answer("OK", BizId="900619746936498440^0")

    sms = AliyunSmsProvider(ALIYUN, context(handler))
    result = await sms.send(message())
    assert result.provider_message_id == "900619746936498440^0:8613900000011"
    query = dict(seen[0].url.params)
    assert query["PhoneNumbers"] == "13900000011" and query["OutId"] == "attempt:7"
    assert json.loads(query["TemplateParam"]) == {"content": "暴雨红色预警\n请回复1确认"}
    assert seen[0].headers["x-acs-action"] == "SendSms" and seen[0].content == b""
    assert sms.flags.two_way("+8613900000011") and not sms.flags.two_way("+14155550101")

    events = sms.parse_callback(
        body_of(
            [
                {"phone_number": "13900000011", "success": True, "biz_id": "900619746936498440^0",
                 "err_code": "DELIVERED"},
                {"phone_number": "8613900000011", "success": "false", "biz_id": "9^0",
                 "err_code": "MK:0001", "err_msg": "空号"},
                {"phone_number": "13900000011", "content": "1 收到", "sign_name": "叫应平台",
                 "send_time": "2026-07-01 08:01:00", "sequence_id": 12},
            ]
        )
    )  # fmt: skip
    assert events == [
        DeliveryReport(result.provider_message_id, "delivered", provider_status="DELIVERED"),
        DeliveryReport("9^0:8613900000011", "failed", "MK:0001", "空号", provider_status="MK:0001"),
        InboundText("+8613900000011", "1 收到", "12"),
    ]
    assert json.loads(sms.callback_response().body) == {"code": 0, "msg": "接收成功"}
    for bad in (b"not json", b"{}", b"[]", b'[{"phone_number": "1"}]', b"[1]"):
        with pytest.raises(CallbackRejected):
            sms.parse_callback(CallbackRequest(url="u", body=bad))


def test_aliyun_voice_reports_feed_the_ladder_and_keys_answer() -> None:
    voice = AliyunVoiceProvider(ALIYUN, context(lambda r: aliyun_answer("OK")))
    assert voice.flags.recipient_limits == ((1, 60.0), (5, 3600.0), (20, 86400.0))

    def report(status: str, dtmf: str = "") -> list[Any]:
        item = {"call_id": "116^1", "status_code": status, "dtmf": dtmf, "out_id": "attempt:7"}
        return voice.parse_callback(body_of([item]))

    assert report("200000", "1") == [
        DeliveryReport("116^1", "delivered", provider_status="200000"),
        DirectReply("116^1", "1", kind="keypress"),
    ]
    assert report("300000", "23") == [DirectReply("116^1", "2", kind="keypress")]
    statuses = {code: report(code)[0] for code in ("200002", "200003", "200010", "200004")}
    assert statuses["200002"].status == "busy"
    assert statuses["200003"].status == statuses["200010"].status == "no_answer"
    assert statuses["200004"].status == "failed" and statuses["200004"].contact_bad
    assert report("200121")[0].other_provider
    with pytest.raises(CallbackRejected, match="call_id"):
        voice.parse_callback(body_of([{"status_code": "200000"}]))


async def test_aliyun_voice_plays_the_text_up_to_three_times() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return aliyun_answer("OK", CallId="116^1")

    voice = AliyunVoiceProvider({**ALIYUN, "voice_show_number": "057100000000"}, context(handler))
    result = await voice.send(message(channel=Channel.VOICE, repeat=5))
    query = dict(seen[0].url.params)
    assert result.provider_message_id == "116^1"
    assert (query["PlayTimes"], query["CalledNumber"], query["CalledShowNumber"]) == (
        "3",
        "13900000011",
        "057100000000",
    )
    assert seen[0].url.host == "dyvmsapi.aliyuncs.com"


# --- Tencent ------------------------------------------------------------------------------


def tencent_status(code: str) -> httpx.Response:
    entry = {
        "SerialNo": "2640:1" if code == "Ok" else "",
        "PhoneNumber": "+8613900000011",
        "Code": code,
        "Message": "m",
        "Fee": 1,
        "SessionContext": "",
        "IsoCode": "CN",
    }
    return httpx.Response(200, json={"Response": {"SendStatusSet": [entry], "RequestId": "r"}})


@pytest.mark.parametrize(
    ("answer", "retryable", "contact_bad", "other_provider"),
    [
        (tencent_status("LimitExceeded.PhoneNumberThirtySecondLimit"), True, False, True),
        (tencent_status("InvalidParameterValue.IncorrectPhoneNumber"), False, True, False),
        (tencent_status("FailedOperation.PhoneNumberInBlacklist"), False, True, False),
        (
            httpx.Response(200, json={"Response": {"Error": {"Code": "InternalError"}}}),
            True,
            False,
            False,
        ),
        (
            httpx.Response(
                200, json={"Response": {"Error": {"Code": "FailedOperation.SignatureIncorrect"}}}
            ),
            False,
            False,
            False,
        ),
    ],
)
async def test_tencent_results_are_read_per_number(
    answer: httpx.Response, retryable: bool, contact_bad: bool, other_provider: bool
) -> None:
    provider = TencentSmsProvider(TENCENT, context(lambda request: answer))
    with pytest.raises(SendError) as raised:
        await provider.send(message())
    error = raised.value
    assert (error.retryable, error.contact_bad, error.other_provider) == (
        retryable,
        contact_bad,
        other_provider,
    )


async def test_tencent_reads_receipts_and_replies() -> None:
    provider = TencentSmsProvider(TENCENT, context(lambda request: tencent_status("Ok")))
    assert (await provider.send(message())).provider_message_id == "2640:1"
    receipts = provider.parse_callback(
        body_of(
            [
                {"mobile": "13900000011", "nationcode": "86", "report_status": "SUCCESS",
                 "errmsg": "DELIVRD", "sid": "2640:1"},
                {"mobile": "13900000011", "nationcode": "86", "report_status": "FAIL",
                 "errmsg": "MK:0001", "description": "空号", "sid": "2640:2"},
            ]
        )
    )  # fmt: skip
    assert [(r.provider_message_id, r.status) for r in receipts] == [  # type: ignore[union-attr]
        ("2640:1", "delivered"),
        ("2640:2", "failed"),
    ]
    reply = provider.parse_callback(
        body_of({"mobile": "13900000011", "nationcode": "86", "text": "2 求助", "time": 1})
    )
    assert reply == [InboundText("+8613900000011", "2 求助")]
    assert json.loads(provider.callback_response().body) == {"result": 0, "errmsg": "OK"}
    with pytest.raises(CallbackRejected, match="receipt nor a reply"):
        provider.parse_callback(body_of({"foo": 1}))


# --- WeCom --------------------------------------------------------------------------------


def wecom_provider(fake: FakeWeCom) -> WeComProvider:
    settings = {
        "corp_id": fake.corp_id,
        "corp_secret": fake.corp_secret,
        "agent_id": fake.agent_id,
        "token": fake.token,
        "encoding_aes_key": fake.encoding_aes_key,
        "base_url": "http://wecom.fake",
    }
    return WeComProvider(settings, context(transport=httpx.ASGITransport(app=fake.app)))


async def test_wecom_token_is_cached_and_fetched_again_once_when_stale() -> None:
    fake = FakeWeCom(now=lambda: datetime(2026, 7, 1, tzinfo=UTC), members={"zhang", "li"})
    provider = wecom_provider(fake)
    await provider.send(message("zhang", Channel.WECHAT, answer_url="https://jy/a/x"))
    await provider.send(message("li", Channel.WECHAT))
    assert fake.gettoken_calls == 1 and len(fake.delivered) == 2
    fake.expire_tokens()
    await provider.send(message("zhang", Channel.WECHAT))
    assert fake.gettoken_calls == 2 and len(fake.delivered) == 3
    # a token WeCom never gave (revoked): fetched again once too
    fake.tokens.clear()
    await provider.send(message("li", Channel.WECHAT, expects_answer=False))
    assert fake.gettoken_calls == 3 and fake.delivered[-1]["msgtype"] == "text"
    card = fake.delivered[0]["template_card"]
    assert card["main_title"]["title"] == "暴雨红色预警" and card["sub_title_text"] == "请回复1确认"
    assert card["card_action"] == {"type": 1, "url": "https://jy/a/x"}
    assert card["task_id"].startswith("jy-attempt-7-")
    # a member WeCom does not know is a bad contact, alone (81013) or among others
    with pytest.raises(SendError) as raised:
        await provider.send(message("ghost", Channel.WECHAT))
    assert raised.value.contact_bad and raised.value.code == "invaliduser"
    await provider._context.http.aclose()
    await fake.aclose()


async def test_wecom_reads_taps_and_marks_the_card() -> None:
    fake = FakeWeCom(now=lambda: datetime(2026, 7, 1, tzinfo=UTC), members={"zhang"})
    provider = wecom_provider(fake)
    sent = await provider.send(message("zhang", Channel.WECHAT))
    crypto = WeChatCrypto(fake.token, fake.encoding_aes_key, fake.corp_id)
    event = (
        "<xml><ToUserName>c</ToUserName><FromUserName>zhang</FromUserName>"
        "<MsgType>event</MsgType><Event>template_card_event</Event><EventKey>help</EventKey>"
        f"<TaskId>{sent.provider_message_id}</TaskId><ResponseCode>RC1</ResponseCode></xml>"
    )
    packed = crypto.encrypt_message(event, "n1", "1700000000")
    encrypt = packed.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    sig = packed.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    request = CallbackRequest(
        url="u",
        query={"msg_signature": sig, "timestamp": "1700000000", "nonce": "n1"},
        body=f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode(),
    )
    [tap] = provider.parse_callback(request)
    assert tap == DirectReply(
        sent.provider_message_id, "help", kind="button", sender="zhang", receipt="RC1"
    )
    fake._response_codes["RC1"] = sent.provider_message_id
    await provider.confirm_answer(tap, "已确认：求助")
    assert fake.card_updates[0]["button"] == {"replace_name": "已确认：求助"}
    with pytest.raises(SendError, match="40035"):
        await provider.confirm_answer(tap, "已确认")  # a ResponseCode works once

    echo = crypto.encrypt_message("echo", "n2", "1700000001")
    echo_encrypt = echo.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    echo_sig = echo.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    check = CallbackRequest(
        url="u",
        method="GET",
        query={"msg_signature": echo_sig, "timestamp": "1700000001", "nonce": "n2",
               "echostr": echo_encrypt},
    )  # fmt: skip
    assert provider.parse_callback(check) == [Handshake("echo")]
    for bad in (b"not xml", b"<xml/>", b'<!DOCTYPE x [<!ENTITY a "b">]><xml>&a;</xml>'):
        with pytest.raises(CallbackRejected):
            provider.parse_callback(CallbackRequest(url="u", query=request.query, body=bad))
    await provider._context.http.aclose()
    await fake.aclose()


# --- per-recipient limits (real Redis) ------------------------------------------------------


async def test_recipient_limits_space_sends_to_one_person(runtime: Runtime) -> None:
    limiter = runtime.recipients
    limits = ((2, 60.0), (3, 3600.0))
    t0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)

    async def admit(at: datetime, n: int, who: str = "zhang") -> datetime:
        return await limiter.admit("wechat", "wecom", who, limits, f"s{n}", at)

    assert await admit(t0, 1) == t0
    assert await admit(t0 + timedelta(seconds=1), 2) == t0 + timedelta(seconds=1)
    # a third within the minute waits for the first to leave the window
    assert await admit(t0 + timedelta(seconds=2), 3) == t0 + timedelta(seconds=60)
    assert await admit(t0, 1, who="li") == t0  # someone else is not held up
    assert await admit(t0 + timedelta(seconds=60), 3) == t0 + timedelta(seconds=60)
    # the hour's three are used: the next waits for the first of them to be an hour old
    assert await admit(t0 + timedelta(seconds=200), 4) == t0 + timedelta(seconds=3600)
    assert await limiter.admit("wechat", "wecom", "x", (), "s", t0) == t0
