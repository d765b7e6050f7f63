"""Providers in isolation (httpx.MockTransport), routes, settings and the circuit breaker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from channels.base import CallbackRejected, CallbackRequest, Channel, Message, ProviderContext
from channels.speaker_http import HttpSpeakerProvider, sign_report
from channels.twilio_sms import TwilioSmsProvider
from channels.twilio_voice import TwilioVoiceProvider
from dispatcher.circuit import CircuitBreakers
from dispatcher.config import ConfigError, FailoverSettings, settings_from_dict
from dispatcher.routing import route_for
from dispatcher.runtime import Runtime
from tests.fakes.twilio_api import twilio_signature

ACCOUNT = "AC" + "1" * 32
TOKEN = "unit-token"
HOOK = "https://jy.example.gov.cn/hooks/sms/twilio?token=t"
TWILIO = {"account_sid": ACCOUNT, "auth_token": TOKEN, "from_number": "+15005550006"}


async def _never(request: CallbackRequest, delay_s: float) -> None:
    raise AssertionError("real providers do not schedule callbacks")


def context(handler: Any, callback_url: str = HOOK) -> ProviderContext:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return ProviderContext(http=http, callback_url=callback_url, schedule_callback=_never)


def message(to: str = "+14155550101", channel: Channel = Channel.SMS) -> Message:
    return Message(channel, to, "测试预警", "attempt:1", "responder:1", repeat=2)


def twilio_error(status: int, code: int) -> httpx.Response:
    body = {"code": code, "message": "no", "more_info": "", "status": status}
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("answer", "retryable", "contact_bad", "other_provider"),
    [
        (twilio_error(400, 21211), False, True, False),
        (twilio_error(400, 21610), False, True, False),
        (twilio_error(400, 21408), False, False, True),
        (twilio_error(429, 20429), True, False, False),
        (twilio_error(500, 20500), True, False, False),
        (twilio_error(401, 20003), True, False, False),
        (httpx.Response(502, text="<html>bad gateway</html>"), True, False, False),
        (twilio_error(400, 21602), False, False, False),
    ],
)
async def test_twilio_errors_are_classified(
    answer: httpx.Response, retryable: bool, contact_bad: bool, other_provider: bool
) -> None:
    provider = TwilioSmsProvider(TWILIO, context(lambda request: answer))
    with pytest.raises(Exception) as raised:
        await provider.send(message())
    error = raised.value
    assert (error.retryable, error.contact_bad, error.other_provider) == (  # type: ignore[attr-defined]
        retryable,
        contact_bad,
        other_provider,
    )


async def test_twilio_network_errors_are_retryable_and_requests_go_to_base_url() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectTimeout("no route", request=request)

    settings = {**TWILIO, "base_url": "http://127.0.0.1:9/fake"}
    provider = TwilioSmsProvider(settings, context(handler))
    with pytest.raises(Exception) as raised:
        await provider.send(message())
    assert raised.value.retryable and raised.value.code == "network"  # type: ignore[attr-defined]
    assert str(seen[0].url) == (
        f"http://127.0.0.1:9/fake/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    )
    form = dict(httpx.QueryParams(seen[0].content.decode()))
    assert form["To"] == "+14155550101" and form["StatusCallback"].startswith(HOOK + "#rc=3")


def signed(form: dict[str, str], url: str = HOOK) -> CallbackRequest:
    signature = twilio_signature(TOKEN, url, form)
    return CallbackRequest(url=url, headers={"X-Twilio-Signature": signature}, form=form)


async def test_twilio_sms_callbacks() -> None:
    provider = TwilioSmsProvider(TWILIO, context(lambda r: httpx.Response(500)))
    [report] = provider.parse_callback(
        signed({"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30007"})
    )
    assert (report.status, report.other_provider, report.contact_bad) == (  # type: ignore[union-attr]
        "failed",
        True,
        False,
    )
    assert provider.parse_callback(signed({"MessageSid": "SM1", "MessageStatus": "queued"})) == []
    [text] = provider.parse_callback(signed({"From": "+14155550101", "Body": "收到"}))
    assert text.text == "收到"  # type: ignore[union-attr]
    with pytest.raises(CallbackRejected) as rejected:
        provider.parse_callback(signed({"MessageSid": "SM1"}))
    assert rejected.value.status == 400
    assert provider.flags.two_way("+14155550101") and not provider.flags.two_way("+8613900000011")


async def test_twilio_voice_twiml_and_keypress_answers() -> None:
    provider = TwilioVoiceProvider(
        {**TWILIO, "voice": "Polly.Zhiyu", "voice_language": "cmn-CN"},
        context(lambda r: httpx.Response(500), "https://jy/hooks/voice/twilio"),
    )
    twiml = provider.call_twiml("请注意<暴雨>", repeat=2)
    assert twiml.count('<Say language="cmn-CN" voice="Polly.Zhiyu">请注意&lt;暴雨&gt;</Say>') == 2
    assert 'action="https://jy/hooks/voice/twilio"' in twiml and 'numDigits="1"' in twiml
    from channels.base import CallbackReply

    hang_up = provider.callback_response(CallbackReply(say="已确认收到"))
    assert "已确认收到" in hang_up.body and "<Hangup />" in hang_up.body
    again = provider.callback_response(CallbackReply(say="再播一遍", replay="请注意"))
    assert "<Gather" in again.body and again.body.count("<Say") == 2
    assert provider.callback_response(None).body.endswith("<Response/>")


async def test_speaker_platform_refusals() -> None:
    answers = iter(
        [
            httpx.Response(200, json={"result": "device busy", "code": "BUSY"}),
            httpx.Response(404, json={"result": "device not found", "code": "DEVICE_NOT_FOUND"}),
            httpx.Response(200, json={"result": "ok", "taskId": "T9"}),
        ]
    )
    settings = {"base_url": "http://platform", "api_key": "k", "callback_secret": "s"}
    provider = HttpSpeakerProvider(settings, context(lambda r: next(answers)))
    speaker = Message(Channel.SPEAKER, "spk-1", "注意", "broadcast:1", "speaker:1", repeat=3)
    with pytest.raises(Exception) as busy:
        await provider.send(speaker)
    assert busy.value.retryable  # type: ignore[attr-defined]
    with pytest.raises(Exception) as missing:
        await provider.send(speaker)
    assert not missing.value.retryable  # type: ignore[attr-defined]
    assert (await provider.send(speaker)).provider_message_id == "T9"
    body = json.dumps({"frameId": "broadcast:1", "taskId": "T9", "result": "ok"}).encode()
    headers = {"X-Speaker-Timestamp": "1", "X-Speaker-Signature": sign_report("s", "1", body)}
    [report] = provider.parse_callback(CallbackRequest(url="u", headers=headers, body=body))
    assert report.played  # type: ignore[union-attr]
    with pytest.raises(CallbackRejected):
        provider.parse_callback(CallbackRequest(url="u", headers=headers, body=b'{"x": 1}'))


def test_routes_pick_the_longest_prefix() -> None:
    settings = settings_from_dict(
        {
            "channels": {
                "sms": {
                    "providers": ["simulated"],
                    "routes": {"+86": ["simulated"], "+8613": ["twilio", "simulated"]},
                }
            },
            "providers": {"twilio": TWILIO},
        },
        env={},
    )
    assert route_for(settings, "sms", "+8613900000011") == ["twilio", "simulated"]
    assert route_for(settings, "sms", "+8618900000011") == ["simulated"]
    assert route_for(settings, "sms", "+14155550101") == ["simulated"]
    assert settings.channels.sms.all_providers == ["simulated", "twilio"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"channels": {"sms": {"providers": ["nexmo"]}}}, "unknown provider 'nexmo'"),
        ({"channels": {"sms": {"providers": ["aliyun"]}}}, "aliyun needs callback_token"),
        ({"channels": {"wechat": {"providers": ["wecom"]}}}, "43-character encoding_aes_key"),
        ({"channels": {"voice": {"providers": ["tencent"]}}}, "carries only"),
        ({"channels": {"sms": {"providers": ["twilio"]}}}, "account_sid and auth_token"),
        ({"channels": {"speaker": {"providers": ["twilio"]}}}, "carries only"),
        ({"channels": {"sms": {"providers": []}}}, "at least one provider"),
        ({"channels": {"sms": {"routes": {"+86": []}}}}, "needs a prefix"),
    ],
)
def test_bad_channel_settings_name_the_problem(raw: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        settings_from_dict(raw, env={})


def test_twilio_token_from_the_environment() -> None:
    raw = {
        "channels": {"sms": {"providers": ["twilio"]}},
        "providers": {"twilio": {"account_sid": ACCOUNT, "from_number": "+15005550006"}},
    }
    settings = settings_from_dict(raw, env={"JIAOYING_TWILIO_AUTH_TOKEN": "from-env"})
    assert settings.providers.twilio.auth_token == "from-env"
    assert settings.providers.rate_per_s("twilio", "voice") == 1.0
    assert settings.providers.rate_per_s("simulated", "sms") == 0.0


async def test_half_open_circuit_admits_one_trial(runtime: Runtime) -> None:
    breakers = CircuitBreakers(
        runtime.queue.pool, FailoverSettings(failures_to_open=2, window_s=10, open_s=30)
    )
    now = datetime(2026, 7, 1, tzinfo=UTC)
    assert await breakers.record_failure("sms", "p", now) == "closed"
    # failures further apart than the window do not add up
    assert await breakers.record_failure("sms", "p", now + timedelta(seconds=11)) == "closed"
    later = now + timedelta(seconds=12)
    assert await breakers.record_failure("sms", "p", later) == "open"
    assert not (await breakers.admit("sms", "p", later)).allowed
    reopen = later + timedelta(seconds=31)
    assert await breakers.state("sms", "p", reopen) == "half_open"
    # two workers ask at once: one trial only
    assert [(await breakers.admit("sms", "p", reopen)).allowed for _ in range(2)] == [True, False]
    # the trial fails: open again for open_s
    assert await breakers.record_failure("sms", "p", reopen) == "open"
    assert await breakers.state("sms", "p", reopen + timedelta(seconds=29)) == "open"
    await breakers.record_success("sms", "p")
    assert await breakers.state("sms", "p", reopen) == "closed"
