"""Tencent Cloud SMS (腾讯云短信) 2021-01-11: `SendSms` out; receipts and replies back.

Requests are JSON POSTs signed with TC3-HMAC-SHA256:

    canonical = "POST\\n/\\n\\n" + each signed header "name:value\\n" (lower-case, sorted)
                + "\\n" + names joined by ";" + "\\n" + hex(sha256(body))
                (we sign content-type, host and x-tc-action)
    to_sign   = "TC3-HMAC-SHA256\\n<timestamp>\\n<date>/sms/tc3_request\\n" + hex(sha256(canonical))
    key       = HMAC(HMAC(HMAC("TC3" + SecretKey, date), "sms"), "tc3_request")
    Authorization: TC3-HMAC-SHA256 Credential=<SecretId>/<date>/sms/tc3_request,
                   SignedHeaders=content-type;host;x-tc-action, Signature=hex(HMAC(key, to_sign))

The answer is HTTP 200 either way: `Response.Error` for a refused request, else one
`SendStatusSet` entry per number with its own `Code` ("Ok" or why not) and `SerialNo`,
the id its receipt carries as `sid`. The template (`template_id`) has one variable, the
text the core rendered. `PhoneNumberSet` takes up to 200 numbers (`max_batch`) with one
`TemplateParamSet` for all, so `send_many` puts the messages whose text is the same (and
that are all mainland or all not: Tencent refuses a mix) in one request, no number twice,
and sends a request per text otherwise (every call text carries its own answer link).
Each number's result is read from its own `SendStatusSet` entry as a single send's is; a
request refused as a whole for its numbers' sake is split (see `channels/batching.py`).

Callbacks (configure both to `/hooks/sms/tencent/<callback_token>`): receipts are a JSON
array `[{mobile, nationcode, report_status: SUCCESS|FAIL, errmsg, description, sid}]`,
a reply `{mobile, nationcode, text, sign, time, extend}`. Tencent wants
`{"result": 0, "errmsg": "OK"}` back. Replies come only from mainland numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from channels.base import (
    CallbackRejected,
    CallbackReply,
    CallbackRequest,
    CallbackResponse,
    Channel,
    DeliveryReport,
    Event,
    InboundText,
    Message,
    PostedCallbacks,
    ProviderContext,
    ProviderFlags,
    SendError,
    SendResult,
)
from channels.batching import Outcome, distinct_chunks, send_requests

SERVICE = "sms"
VERSION = "2021-01-11"
CONTENT_TYPE = "application/json; charset=utf-8"

BAD_NUMBER_CODES = {
    "InvalidParameterValue.IncorrectPhoneNumber",
    "FailedOperation.PhoneNumberInBlacklist",
    "UnsupportedOperation.UnsupportedRegion",
}
# Flow control on this number, or an account problem: another provider now, this one later.
ELSEWHERE_PREFIXES = ("LimitExceeded.", "FailedOperation.InsufficientBalanceInSmsPackage")
RETRYABLE_PREFIXES = ("InternalError", "RequestLimitExceeded", "AuthFailure")
# A request with too many numbers is ours to split, not a number's flow control.
COUNT_LIMIT = "LimitExceeded.PhoneNumberCountLimit"
# Refusals of a whole request with several numbers that one of them may have caused.
SPLIT_CODES = BAD_NUMBER_CODES | {
    COUNT_LIMIT,
    "FailedOperation.ContainDomesticAndInternationalPhoneNumber",
    "FailedOperation.PhoneNumberParseFail",
}
MAX_TEXT = 500
MAX_NUMBERS = 200


def tc3_authorization(
    *,
    secret_id: str,
    secret_key: str,
    signed: Mapping[str, str],
    body: bytes,
    timestamp: int,
    service: str = SERVICE,
) -> str:
    """The Authorization header for a POST to "/" signing the headers in `signed`."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    names = sorted(name.lower() for name in signed)
    values = {name.lower(): value.strip().lower() for name, value in signed.items()}
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            "".join(f"{name}:{values[name]}\n" for name in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/{service}/tc3_request"
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{digest}"

    def _hmac(key: bytes, text: str) -> bytes:
        return hmac.new(key, text.encode(), hashlib.sha256).digest()

    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode(), date), service), "tc3_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )


class TencentSmsProvider(PostedCallbacks):
    def __init__(self, settings: Mapping[str, Any], context: ProviderContext) -> None:
        self.name = "tencent"
        self.channel = Channel.SMS
        self._secret_id = str(settings.get("secret_id", ""))
        self._secret_key = str(settings.get("secret_key", ""))
        self._app_id = str(settings.get("sms_sdk_app_id", ""))
        self._sign_name = str(settings.get("sign_name", ""))
        self._template_id = str(settings.get("template_id", ""))
        self._region = str(settings.get("region", "ap-guangzhou"))
        self._base_url = str(settings.get("base_url", "https://sms.tencentcloudapi.com"))
        if not all((self._secret_id, self._secret_key, self._app_id, self._template_id)):
            raise ValueError(
                "[providers.tencent] needs secret_id, secret_key, sms_sdk_app_id, template_id"
            )
        limits = settings.get("recipient_limits") or ()
        self.flags = ProviderFlags(
            reports_delivery=True,
            receives_replies=True,
            reply_prefixes=("+86",),
            recipient_limits=tuple((int(n), float(w)) for n, w in limits),
            max_batch=MAX_NUMBERS,
        )
        self._context = context

    def request_body(self, message: Message) -> bytes:
        return self.batch_body([message])

    def batch_body(self, messages: Sequence[Message]) -> bytes:
        """`SendSms` to every number of `messages` with the first one's text."""
        payload = {
            "PhoneNumberSet": [m.to for m in messages],
            "SmsSdkAppId": self._app_id,
            "SignName": self._sign_name,
            "TemplateId": self._template_id,
            "TemplateParamSet": [messages[0].text[:MAX_TEXT]],
            # Echoed in each result; one reference when there is one message.
            "SessionContext": messages[0].reference if len(messages) == 1 else "",
        }
        return json.dumps(payload, ensure_ascii=False).encode()

    def signed_headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        signed = {
            "Content-Type": CONTENT_TYPE,
            "Host": urlsplit(self._base_url).netloc,
            "X-TC-Action": "SendSms",
        }
        authorization = tc3_authorization(
            secret_id=self._secret_id,
            secret_key=self._secret_key,
            signed=signed,
            body=body,
            timestamp=timestamp,
        )
        return {
            "Authorization": authorization,
            **signed,
            "X-TC-Version": VERSION,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self._region,
        }

    async def send(self, message: Message) -> SendResult:
        [outcome] = await self._send_one([message])
        if isinstance(outcome, SendError):
            raise outcome
        return outcome

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult | SendError]:
        return await send_requests(messages, self.requests(messages), self._send_one, _split)

    def requests(self, messages: Sequence[Message]) -> list[list[int]]:
        """One request per text (mainland and other numbers apart), no number twice."""
        by_text: dict[tuple[str, bool], list[int]] = {}
        for index, message in enumerate(messages):
            key = (message.text[:MAX_TEXT], message.to.startswith("+86"))
            by_text.setdefault(key, []).append(index)
        return [
            chunk
            for indices in by_text.values()
            for chunk in distinct_chunks(indices, MAX_NUMBERS, lambda i: messages[i].to)
        ]

    async def _send_one(self, messages: list[Message]) -> list[Outcome]:
        """One `SendSms` request; raises `SendError` if it was refused as a whole."""
        body = self.batch_body(messages)
        headers = self.signed_headers(body, int(datetime.now(UTC).timestamp()))
        try:
            response = await self._context.http.post(self._base_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SendError(
                f"tencent SendSms: {type(exc).__name__}", code="network", retryable=True
            ) from exc
        try:
            answer = response.json()["Response"]
        except (ValueError, KeyError, TypeError):
            raise SendError(
                f"tencent SendSms: HTTP {response.status_code}, not an API answer",
                code=str(response.status_code),
                retryable=response.status_code >= 500 or response.status_code == 429,
            ) from None
        if isinstance(answer.get("Error"), dict):
            error = answer["Error"]
            raise classify(str(error.get("Code", "")), str(error.get("Message", "")))
        results = {s.get("PhoneNumber"): s for s in answer.get("SendStatusSet") or []}
        return [_outcome(results.get(m.to)) for m in messages]

    def parse_callback(self, request: CallbackRequest) -> list[Event]:
        try:
            data = json.loads(request.body or b"null")
        except ValueError:
            raise CallbackRejected("a Tencent SMS callback must be JSON") from None
        items = data if isinstance(data, list) else [data]
        if not items or not all(isinstance(item, dict) for item in items):
            raise CallbackRejected("a Tencent SMS callback must be a JSON object or array")
        return [_event(item) for item in items]

    def callback_response(self, reply: CallbackReply | None = None) -> CallbackResponse:
        return CallbackResponse(
            content_type="application/json", body=json.dumps({"result": 0, "errmsg": "OK"})
        )


def _outcome(result: Any) -> Outcome:
    """One number's `SendStatusSet` entry, read as a single send's result."""
    if not isinstance(result, dict):
        return SendError("tencent SendSms: no result for the number", retryable=True)
    code = str(result.get("Code", ""))
    if code != "Ok":
        return classify(code, str(result.get("Message", "")))
    serial = result.get("SerialNo")
    if not isinstance(serial, str) or not serial:
        return SendError("tencent SendSms: no SerialNo for the number", retryable=True)
    return SendResult(provider_message_id=serial)


def _split(error: SendError) -> bool:
    return error.code in SPLIT_CODES


def classify(code: str, message: str) -> SendError:
    text = f"tencent SendSms: {code} {message}".strip()
    if code in BAD_NUMBER_CODES:
        return SendError(text, code=code, contact_bad=True)
    if code.startswith(ELSEWHERE_PREFIXES) and code != COUNT_LIMIT:
        return SendError(text, code=code, retryable=True, other_provider=True)
    return SendError(text, code=code, retryable=code.startswith(RETRYABLE_PREFIXES))


def _phone(item: dict[str, Any]) -> str:
    mobile = str(item.get("mobile") or "").strip()
    if not mobile:
        raise CallbackRejected("a Tencent SMS callback item needs mobile")
    if mobile.startswith("+"):
        return mobile
    nation = str(item.get("nationcode") or "86").lstrip("+")
    return f"+{nation}{mobile}"


def _event(item: dict[str, Any]) -> Event:
    if "report_status" in item:
        sid = item.get("sid")
        if not isinstance(sid, str) or not sid:
            raise CallbackRejected("a Tencent receipt needs sid")
        status = str(item["report_status"])
        code = str(item.get("errmsg") or "") or None
        if status == "SUCCESS":
            return DeliveryReport(sid, "delivered", provider_status=code or status)
        return DeliveryReport(
            sid,
            "failed",
            error_code=code,
            error_message=str(item.get("description") or "") or None,
            provider_status=code or status,
        )
    if "text" in item:
        text = item["text"]
        if not isinstance(text, str):
            raise CallbackRejected("a Tencent reply needs text")
        return InboundText(_phone(item), text)
    raise CallbackRejected(f"neither a Tencent receipt nor a reply: fields {sorted(item)}")
