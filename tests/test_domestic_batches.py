"""Aliyun and Tencent SMS `send_many` against their fakes: many numbers per request,
each number's own outcome, receipts matched to each number's send, limits kept."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from channels import aliyun_sms, tencent_sms
from channels.aliyun_sms import AliyunSmsProvider
from channels.base import (
    CallbackRequest,
    Channel,
    DeliveryReport,
    Event,
    InboundText,
    Message,
    ProviderContext,
    SendError,
    SendResult,
)
from channels.tencent_sms import TencentSmsProvider
from tests.fakes.aliyun_api import FakeAliyun
from tests.fakes.serving import serve
from tests.fakes.tencent_api import FakeTencent

LIFTED = "【叫应·预警解除】暴雨红色预警已解除。原预警的叫应和敲门任务已停止，无需回复。"


def text(to: str, n: int = 1) -> Message:
    """A call text: each person's carries their own answer link."""
    body = f"【叫应】暴雨红色预警。请回复1确认收到，或点击确认：https://jy.example/a/{to[-4:]}{n}"
    return Message(Channel.SMS, to, body, f"attempt:{to[-4:]}{n}", f"responder:{to}")


def notice(to: str) -> Message:
    return Message(Channel.SMS, to, LIFTED, f"attempt:{to[-4:]}n", f"responder:{to}")


def mainland(i: int) -> str:
    return f"+86139{i:08d}"


@dataclass
class Hooks:
    """Where the fakes push their callbacks: each push is read by the provider."""

    provider: Any = None
    events: list[Event] = field(default_factory=list)

    async def take(self, request: Request) -> Response:
        parsed = self.provider.parse_callback(CallbackRequest(url="u", body=await request.body()))
        self.events.extend(parsed)
        answer = self.provider.callback_response()
        return Response(answer.body, answer.status, media_type=answer.content_type)


async def _never(request: CallbackRequest, delay_s: float) -> None:
    raise AssertionError("real providers do not schedule callbacks")


@asynccontextmanager
async def aliyun_world(**fake: Any) -> AsyncIterator[tuple[FakeAliyun, AliyunSmsProvider, Hooks]]:
    aliyun, hooks = FakeAliyun(**fake), Hooks()
    async with (
        serve(aliyun.app) as url,
        serve(Starlette(routes=[Route("/", hooks.take, methods=["POST"])])) as hook_url,
        httpx.AsyncClient() as http,
    ):
        aliyun.sms_report_url = aliyun.sms_up_url = hook_url
        settings = {
            "access_key_id": aliyun.access_key_id,
            "access_key_secret": aliyun.access_key_secret,
            "sms_base_url": url,
            "sms_sign_name": aliyun.sign_name,
            "sms_template_code": "SMS_100001",
        }
        provider = AliyunSmsProvider(settings, ProviderContext(http, hook_url, _never))
        hooks.provider = provider
        yield aliyun, provider, hooks
    await aliyun.aclose()


@asynccontextmanager
async def tencent_world(
    **fake: Any,
) -> AsyncIterator[tuple[FakeTencent, TencentSmsProvider, Hooks]]:
    tencent, hooks = FakeTencent(**fake), Hooks()
    async with (
        serve(tencent.app) as url,
        serve(Starlette(routes=[Route("/", hooks.take, methods=["POST"])])) as hook_url,
        httpx.AsyncClient() as http,
    ):
        tencent.callback_url = hook_url
        settings = {
            "secret_id": tencent.secret_id,
            "secret_key": tencent.secret_key,
            "sms_sdk_app_id": tencent.sdk_app_id,
            "sign_name": tencent.sign_name,
            "template_id": "100001",
            "base_url": url,
        }
        provider = TencentSmsProvider(settings, ProviderContext(http, hook_url, _never))
        hooks.provider = provider
        yield tencent, provider, hooks
    await tencent.aclose()


def ids(outcomes: list[SendResult | SendError]) -> list[str]:
    return [o.provider_message_id for o in outcomes if isinstance(o, SendResult)]


# --- Aliyun ------------------------------------------------------------------------------


async def test_aliyun_batches_each_number_gets_its_own_outcome_and_receipt() -> None:
    good = [mainland(i) for i in range(1, 6)]
    illegal, limited = mainland(41), mainland(51)
    async with aliyun_world(
        illegal_numbers={illegal[3:]},
        limited_numbers={limited[3:]},
        sms_fate={good[1][3:]: (False, "MK:0001")},
    ) as (aliyun, provider, hooks):
        assert provider.flags.max_batch == 1000
        messages = [
            text(good[0]),
            text(illegal),
            notice(good[0]),  # the same person twice: another request
            text(good[1]),
            notice(good[2]),
            text(limited),
            notice(good[3]),
            text(good[2]),
            text(good[3]),
            text(good[4]),
            notice(good[2]),  # the same text to the same number again: another request
        ]
        outcomes = await provider.send_many(messages)

        bad, controlled = outcomes[1], outcomes[5]
        assert isinstance(bad, SendError) and isinstance(controlled, SendError)
        assert (bad.code, bad.contact_bad, bad.retryable) == (
            "isv.MOBILE_NUMBER_ILLEGAL",
            True,
            False,
        )
        assert (controlled.code, controlled.other_provider, controlled.contact_bad) == (
            "isv.BUSINESS_LIMIT_CONTROL",
            True,
            False,
        )
        sent = [o for i, o in enumerate(outcomes) if i not in (1, 5)]
        assert all(isinstance(o, SendResult) for o in sent)
        # every text went out once, with its own words, and nothing to the refused two
        taken = [(m["number"], m["params"]["content"]) for m in aliyun.messages]
        expected = [(m.to[3:], m.text) for i, m in enumerate(messages) if i not in (1, 5)]
        assert sorted(taken) == sorted(expected)
        # the notice to three people shares one SendSms; the call texts go by
        # SendBatchSms, the refused request split until each refusal was one number's
        assert ("SendSms", 3) in aliyun.sent
        assert any(action == "SendBatchSms" for action, _ in aliyun.sent)
        assert sum(n for _, n in aliyun.sent) == len(messages) - 2
        by_request: dict[str, list[str]] = {}
        for m in aliyun.messages:
            by_request.setdefault(m["biz_id"], []).append(m["number"])
        assert all(len(set(numbers)) == len(numbers) for numbers in by_request.values())

        # receipts: one per text, each naming exactly one of the sends
        await aliyun.progress()
        reports = [e for e in hooks.events if isinstance(e, DeliveryReport)]
        assert sorted(r.provider_message_id for r in reports) == sorted(ids(outcomes))
        failed = {r.provider_message_id for r in reports if r.status == "failed"}
        assert failed == {outcomes[3].provider_message_id}  # type: ignore[union-attr]
        assert all(p.answer == '{"code":0,"msg":"接收成功"}' for p in aliyun.posted)

        # a reply to a batched text comes back from its number
        await aliyun.reply(good[4][3:], "1")
        reply = hooks.events[-1]
        assert isinstance(reply, InboundText) and (reply.sender, reply.text) == (good[4], "1")


async def test_aliyun_whole_request_failures_raise() -> None:
    async with aliyun_world(template_code="SMS_OTHER") as (aliyun, provider, _):
        with pytest.raises(SendError) as raised:
            await provider.send_many([text(mainland(1)), text(mainland(2)), notice(mainland(3))])
        assert (raised.value.code, raised.value.retryable) == ("isv.SMS_TEMPLATE_ILLEGAL", False)
        assert not aliyun.messages
    async with aliyun_world() as (aliyun, provider, _):
        aliyun.access_key_secret = "rotated"
        with pytest.raises(SendError) as raised:
            await provider.send_many([text(mainland(1)), text(mainland(2))])
        assert (raised.value.code, raised.value.retryable) == ("SignatureDoesNotMatch", True)


async def test_aliyun_a_receipt_with_aliyuns_own_refusal_means_what_the_send_would() -> None:
    async with aliyun_world(
        sms_fate={
            "13900000001": (False, "isv.BUSINESS_LIMIT_CONTROL"),
            "13900000002": (False, "isv.MOBILE_NUMBER_ILLEGAL"),
            "13900000003": (False, "MK:0001"),
        }
    ) as (aliyun, provider, hooks):
        outcomes = await provider.send_many([text(mainland(i)) for i in (1, 2, 3)])
        await aliyun.progress()
        reports = {r.provider_message_id: r for r in hooks.events if isinstance(r, DeliveryReport)}
        limit, illegal, carrier = (reports[i] for i in ids(outcomes))
        assert (limit.status, limit.other_provider, limit.contact_bad) == ("failed", True, False)
        assert (illegal.other_provider, illegal.contact_bad) == (False, True)
        assert (carrier.other_provider, carrier.contact_bad) == (False, False)


async def test_aliyun_keeps_to_request_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    async with aliyun_world() as (aliyun, provider, _):
        many = [text(mainland(i)) for i in range(250)] + [notice(mainland(i)) for i in range(1001)]
        outcomes = await provider.send_many(many)
        assert all(isinstance(o, SendResult) for o in outcomes)
        # 1,000 of the notices share SendSms; the 1,001st joins the call texts
        assert sorted(aliyun.sent) == [
            ("SendBatchSms", 51),
            ("SendBatchSms", 100),
            ("SendBatchSms", 100),
            ("SendSms", 1000),
        ]
        # the fake refuses what Aliyun refuses...
        aliyun.sent.clear()
        over = [text(mainland(i)) for i in range(101)]
        with pytest.raises(SendError, match=r"isv\.MOBILE_COUNT_OVER_LIMIT"):
            await provider._request("SendBatchSms", provider.send_batch_params(over))
        # ...and a request refused for its size is split, not lost
        monkeypatch.setattr(aliyun_sms, "MAX_SEND_BATCH_SMS", 150)
        outcomes = await provider.send_many([text(mainland(i)) for i in range(150)])
        assert all(isinstance(o, SendResult) for o in outcomes)
        assert sorted(aliyun.sent) == [("SendBatchSms", 75), ("SendBatchSms", 75)]


# --- Tencent -----------------------------------------------------------------------------


async def test_tencent_batches_identical_texts_and_reads_each_number() -> None:
    good = [mainland(i) for i in range(1, 5)]
    invalid, limited, abroad = mainland(41), mainland(51), "+14155550101"
    async with tencent_world(
        invalid_numbers={invalid}, limited_numbers={limited}, fate={good[1]: ("FAIL", "MK:0001")}
    ) as (tencent, provider, hooks):
        assert provider.flags.max_batch == 200
        messages = [
            notice(good[0]),
            notice(invalid),
            notice(good[1]),
            notice(limited),
            notice(abroad),  # Tencent takes no mix of mainland and other numbers
            notice(good[0]),  # the same person twice: another request
            text(good[2]),
            text(good[3]),
        ]
        outcomes = await provider.send_many(messages)
        bad, controlled = outcomes[1], outcomes[3]
        assert isinstance(bad, SendError) and isinstance(controlled, SendError)
        assert (bad.code, bad.contact_bad) == ("InvalidParameterValue.IncorrectPhoneNumber", True)
        assert (controlled.other_provider, controlled.retryable) == (True, True)
        assert controlled.code == "LimitExceeded.PhoneNumberThirtySecondLimit"
        sent = [o for i, o in enumerate(outcomes) if i not in (1, 3)]
        assert all(isinstance(o, SendResult) for o in sent)
        assert sorted(tencent.sent) == [1, 1, 1, 1, 4]
        assert sorted(m["number"] for m in tencent.messages) == sorted(
            m.to for i, m in enumerate(messages) if i not in (1, 3)
        )
        assert sum(m["params"] == [LIFTED] for m in tencent.messages) == 4

        await tencent.progress()
        reports = [e for e in hooks.events if isinstance(e, DeliveryReport)]
        assert sorted(r.provider_message_id for r in reports) == sorted(ids(outcomes))
        failed = [r.provider_message_id for r in reports if r.status == "failed"]
        assert failed == [outcomes[2].provider_message_id]  # type: ignore[union-attr]

        await tencent.reply(good[2][3:], "1")
        assert hooks.events[-1] == InboundText(good[2], "1")


async def test_tencent_whole_request_failures_raise() -> None:
    async with tencent_world(template_id="999") as (tencent, provider, _):
        with pytest.raises(SendError) as raised:
            await provider.send_many([notice(mainland(1)), notice(mainland(2))])
        assert raised.value.code == "FailedOperation.TemplateIncorrectOrUnapproved"
        assert not tencent.messages
    async with tencent_world() as (tencent, provider, _):
        tencent.secret_key = "rotated"
        with pytest.raises(SendError) as raised:
            await provider.send_many([notice(mainland(1)), notice(mainland(2))])
        assert (raised.value.code, raised.value.retryable) == ("AuthFailure.SignatureFailure", True)


async def test_tencent_keeps_to_request_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    async with tencent_world() as (tencent, provider, _):
        outcomes = await provider.send_many([notice(mainland(i)) for i in range(250)])
        assert all(isinstance(o, SendResult) for o in outcomes)
        assert sorted(tencent.sent) == [50, 200]
        tencent.sent.clear()
        over = [notice(mainland(i)) for i in range(201)]
        with pytest.raises(SendError) as raised:
            await provider._send_one(over)
        # too many numbers is our mistake to split, not a number's flow control
        assert raised.value.code == "LimitExceeded.PhoneNumberCountLimit"
        assert not raised.value.other_provider
        monkeypatch.setattr(tencent_sms, "MAX_NUMBERS", 300)
        outcomes = await provider.send_many([notice(mainland(i)) for i in range(300)])
        assert all(isinstance(o, SendResult) for o in outcomes)
        assert sorted(tencent.sent) == [150, 150]


async def test_request_bodies_carry_one_text_per_number() -> None:
    """SendBatchSms's arrays are read in step: number i gets sign i and text i."""
    settings = {
        "access_key_id": "id",
        "access_key_secret": "secret",
        "sms_sign_name": "叫应平台",
        "sms_template_code": "SMS_1",
    }
    async with httpx.AsyncClient() as http:
        provider = AliyunSmsProvider(settings, ProviderContext(http, "u", _never))
    messages = [text(mainland(1)), text("+85251234567")]
    params = provider.send_batch_params(messages)
    assert json.loads(params["PhoneNumberJson"]) == ["13900000001", "85251234567"]
    assert json.loads(params["SignNameJson"]) == ["叫应平台", "叫应平台"]
    assert json.loads(params["TemplateParamJson"]) == [{"content": m.text} for m in messages]
    assert params["TemplateCode"] == "SMS_1"


async def test_a_request_that_fails_oddly_does_not_lose_the_others() -> None:
    """One request of a batch answers nonsense: its message fails (to be tried again),
    the other request's send is kept, not sent a second time."""

    def handler(request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        if payload["PhoneNumberSet"] == [mainland(2)]:
            return httpx.Response(200, json={"Response": ["not", "an", "answer"]})
        status = {"PhoneNumber": mainland(1), "Code": "Ok", "SerialNo": "2640:1"}
        return httpx.Response(200, json={"Response": {"SendStatusSet": [status]}})

    settings = {
        "secret_id": "id",
        "secret_key": "key",
        "sms_sdk_app_id": "1400000001",
        "template_id": "1",
    }
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        provider = TencentSmsProvider(settings, ProviderContext(http, "u", _never))
        ok, odd = await provider.send_many([text(mainland(1)), text(mainland(2))])
    assert ok == SendResult("2640:1")
    assert isinstance(odd, SendError) and odd.retryable
