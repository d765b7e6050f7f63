"""Aliyun SMS (短信服务): `SendSms` and `SendBatchSms` out; `SmsReport` receipts and `SmsUp` back.

Aliyun sends only texts of an approved template under an approved signature: the
template (`sms_template_code`) must consist of one variable, `${content}` by default
(`sms_text_param`), which carries the message the core rendered.

`send` sends one text with `SendSms`. `send_many` takes up to 1,000 (`max_batch`): texts
that are the same for several numbers (a lifted notice) share `SendSms` requests, up to
1,000 numbers and one `TemplateParam` each; the others (every call text carries its own
answer link) go up to 100 to a `SendBatchSms` request, whose `PhoneNumberJson`,
`SignNameJson` and `TemplateParamJson` are JSON arrays read in step. Either answers one
`Code` and one `BizId` for the whole request. A request refused for one number's or
text's sake (`isv.MOBILE_NUMBER_ILLEGAL`, `isv.BUSINESS_LIMIT_CONTROL`, a blocked word)
does not say which, so it is split until the refusal is the one message's own (see
`channels/batching.py`). A receipt names the request's `BizId` and the number, so a
message's id here is "<BizId>:<number>" and no number appears twice in one request.

Callbacks: configure "HTTP批量推送" for `SmsReport` and `SmsUp` to
`/hooks/sms/aliyun/<callback_token>`. Both are JSON arrays; a report is
`{phone_number, success, err_code, err_msg, biz_id, out_id, report_time}`, a reply
`{phone_number, content, send_time, sign_name, dest_code, sequence_id}`. Replies come
only from mainland numbers. Aliyun wants `{"code": 0, "msg": "接收成功"}` back. A failed
receipt carrying one of Aliyun's own refusal codes means what the same code means on a
send (a batch's number refused after the request was taken).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from channels.aliyun_common import (
    BAD_NUMBER_CODES,
    ELSEWHERE_CODES,
    AliyunOptions,
    accepted,
    api_number,
    call_rpc,
    number_key,
    read_json_list,
)
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

# A template variable may hold this many characters (Aliyun's limit for notices).
MAX_TEXT = 500
# Numbers per request: `SendSms` (one text for all), `SendBatchSms` (a text each).
MAX_SEND_SMS = 1000
MAX_SEND_BATCH_SMS = 100
# Refusals of a request with several numbers that one number or text may have caused.
SPLIT_CODES = BAD_NUMBER_CODES | {
    "isv.BUSINESS_LIMIT_CONTROL",
    "isv.MOBILE_COUNT_OVER_LIMIT",
    "isv.BLACK_KEY_CONTROL_LIMIT",
    "isv.PARAM_LENGTH_LIMIT",
    "isv.PARAM_NOT_SUPPORT_URL",
    "isv.SMS_CONTENT_ILLEGAL",
}


def message_id(biz_id: str, number: str) -> str:
    return f"{biz_id}:{number_key(number)}"


class AliyunSmsProvider(PostedCallbacks):
    def __init__(self, settings: Mapping[str, Any], context: ProviderContext) -> None:
        self.name = "aliyun"
        self.channel = Channel.SMS
        self.options = AliyunOptions.from_settings(settings)
        if not self.options.sms_sign_name or not self.options.sms_template_code:
            raise ValueError("[providers.aliyun] needs sms_sign_name and sms_template_code")
        self.flags = ProviderFlags(
            reports_delivery=True,
            receives_replies=True,
            reply_prefixes=("+86",),
            recipient_limits=self.options.sms_recipient_limits,
            max_batch=MAX_SEND_SMS,
        )
        self._context = context

    def _param(self, message: Message) -> dict[str, str]:
        return {self.options.sms_text_param: message.text[:MAX_TEXT]}

    def send_params(self, message: Message) -> dict[str, str]:
        return {**self.send_sms_params([message]), "OutId": message.reference}

    def send_sms_params(self, messages: Sequence[Message]) -> dict[str, str]:
        """`SendSms` to every number of `messages`, with the first one's text."""
        options = self.options
        return {
            "PhoneNumbers": ",".join(api_number(m.to) for m in messages),
            "SignName": options.sms_sign_name,
            "TemplateCode": options.sms_template_code,
            "TemplateParam": json.dumps(self._param(messages[0]), ensure_ascii=False),
        }

    def send_batch_params(self, messages: Sequence[Message]) -> dict[str, str]:
        """`SendBatchSms`: the arrays are read in step, one entry per number."""
        options = self.options
        return {
            "PhoneNumberJson": _json([api_number(m.to) for m in messages]),
            "SignNameJson": _json([options.sms_sign_name] * len(messages)),
            "TemplateCode": options.sms_template_code,
            "TemplateParamJson": _json([self._param(m) for m in messages]),
        }

    async def _request(self, action: str, params: Mapping[str, str]) -> str:
        answer = await call_rpc(
            self._context.http, self.options, self.options.sms_base_url, action, params, action
        )
        biz_id = answer.get("BizId")
        if not isinstance(biz_id, str) or not biz_id:
            raise SendError(f"aliyun {action}: no BizId in the answer", retryable=True)
        return biz_id

    async def send(self, message: Message) -> SendResult:
        biz_id = await self._request("SendSms", self.send_params(message))
        return SendResult(provider_message_id=message_id(biz_id, message.to))

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult | SendError]:
        return await send_requests(messages, self.requests(messages), self._send_one, _split)

    def requests(self, messages: Sequence[Message]) -> list[list[int]]:
        """Which messages go together: a text several numbers get shares `SendSms`
        requests; the rest go to `SendBatchSms`, or alone to `SendSms`."""
        by_text: dict[str, list[int]] = {}
        for index, message in enumerate(messages):
            by_text.setdefault(message.text[:MAX_TEXT], []).append(index)

        def number(index: int) -> str:
            return number_key(messages[index].to)

        shared: list[list[int]] = []
        rest: list[int] = []
        for indices in by_text.values():
            for chunk in distinct_chunks(indices, MAX_SEND_SMS, number):
                if len(chunk) > 1:
                    shared.append(chunk)
                else:
                    rest.extend(chunk)
        return shared + distinct_chunks(sorted(rest), MAX_SEND_BATCH_SMS, number)

    async def _send_one(self, messages: list[Message]) -> list[Outcome]:
        """One request: `SendSms` for one text, else `SendBatchSms`."""
        if len(messages) == 1:
            return [await self.send(messages[0])]
        if len({m.text[:MAX_TEXT] for m in messages}) == 1:
            biz_id = await self._request("SendSms", self.send_sms_params(messages))
        else:
            biz_id = await self._request("SendBatchSms", self.send_batch_params(messages))
        return [SendResult(provider_message_id=message_id(biz_id, m.to)) for m in messages]

    def parse_callback(self, request: CallbackRequest) -> list[Event]:
        events: list[Event] = []
        for item in read_json_list(request.body, "SMS"):
            if "content" in item:
                events.append(_reply(item))
            elif "biz_id" in item and "success" in item:
                events.append(_report(item))
            else:
                raise CallbackRejected(
                    f"neither an SmsReport nor an SmsUp item: fields {sorted(item)}"
                )
        return events

    def callback_response(self, reply: CallbackReply | None = None) -> CallbackResponse:
        return accepted()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _split(error: SendError) -> bool:
    return error.code in SPLIT_CODES


def _reply(item: dict[str, Any]) -> InboundText:
    phone, content = item.get("phone_number"), item.get("content")
    if not isinstance(phone, str) or not phone or not isinstance(content, str):
        raise CallbackRejected("an SmsUp item needs phone_number and content")
    sequence = item.get("sequence_id")
    return InboundText("+" + number_key(phone), content, str(sequence) if sequence else None)


def _report(item: dict[str, Any]) -> DeliveryReport:
    phone, biz_id = item.get("phone_number"), item.get("biz_id")
    if not isinstance(phone, str) or not isinstance(biz_id, str) or not phone or not biz_id:
        raise CallbackRejected("an SmsReport item needs phone_number and biz_id")
    success = item["success"] in (True, "true", "True", 1)
    code = str(item.get("err_code") or "") or None
    if success:
        return DeliveryReport(message_id(biz_id, phone), "delivered", provider_status=code)
    return DeliveryReport(
        message_id(biz_id, phone),
        "failed",
        error_code=code,
        error_message=str(item.get("err_msg") or "") or None,
        provider_status=code,
        # Carrier receipt codes are not documented well enough to call a number dead
        # from them; Aliyun's own refusal codes are, as they are on a send.
        contact_bad=code in BAD_NUMBER_CODES,
        other_provider=code in ELSEWHERE_CODES,
    )
