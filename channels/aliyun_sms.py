"""Aliyun SMS (短信服务): `SendSms` out; `SmsReport` receipts and `SmsUp` replies back.

Aliyun sends only texts of an approved template under an approved signature: the
template (`sms_template_code`) must consist of one variable, `${content}` by default
(`sms_text_param`), which carries the message the core rendered. One request carries one
number for now (the pipeline sends one attempt per job); `SendSms` takes up to 1,000
numbers sharing one text and `SendBatchSms` up to 100 with a text each, and since every
person's text carries their own answer link, a batch method would use `SendBatchSms`
with the same `_message_id` rule: a receipt names the request's `BizId` and the number,
so a message's id here is "<BizId>:<number>".

Callbacks: configure "HTTP批量推送" for `SmsReport` and `SmsUp` to
`/hooks/sms/aliyun/<callback_token>`. Both are JSON arrays; a report is
`{phone_number, success, err_code, err_msg, biz_id, out_id, report_time}`, a reply
`{phone_number, content, send_time, sign_name, dest_code, sequence_id}`. Replies come
only from mainland numbers. Aliyun wants `{"code": 0, "msg": "接收成功"}` back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from channels.aliyun_common import (
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

# A template variable may hold this many characters (Aliyun's limit for notices).
MAX_TEXT = 500


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
        )
        self._context = context

    def send_params(self, message: Message) -> dict[str, str]:
        options = self.options
        return {
            "PhoneNumbers": api_number(message.to),
            "SignName": options.sms_sign_name,
            "TemplateCode": options.sms_template_code,
            "TemplateParam": json.dumps(
                {options.sms_text_param: message.text[:MAX_TEXT]}, ensure_ascii=False
            ),
            "OutId": message.reference,
        }

    async def send(self, message: Message) -> SendResult:
        answer = await call_rpc(
            self._context.http,
            self.options,
            self.options.sms_base_url,
            "SendSms",
            self.send_params(message),
            "SendSms",
        )
        biz_id = answer.get("BizId")
        if not isinstance(biz_id, str) or not biz_id:
            raise SendError("aliyun SendSms: no BizId in the answer", retryable=True)
        return SendResult(provider_message_id=message_id(biz_id, message.to))

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
        # Carrier receipt codes are not documented well enough to call a number dead
        # from them; the send refusal (isv.MOBILE_NUMBER_ILLEGAL) does that.
        provider_status=code,
    )
