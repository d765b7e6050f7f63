"""Aliyun voice notifications (语音服务 VMS): `SingleCallByTts` out, `VoiceReport` back.

The call reads an approved TTS template (`voice_tts_code`) whose one variable
(`voice_text_param`, `${content}` by default) carries the text the core rendered,
`PlayTimes` times (1-3). The result comes back as a `VoiceReport` push (a JSON array)
to `/hooks/voice/aliyun/<callback_token>`: `status_code` says how the call ended and
`dtmf` holds the key the person pressed, which answers the call as a `<Gather>` keypress
does on Twilio (`VoiceCallReport` pushes with status 300000 and a `dtmf` are read the
same way). Nothing can be said back after the key: the call is over by then. Aliyun
allows one callee 1 call a minute, 5 an hour and 20 a day: declared as recipient limits
so the core spaces calls instead of having them refused. Aliyun wants
`{"code": 0, "msg": "接收成功"}` back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from channels.aliyun_common import AliyunOptions, accepted, api_number, call_rpc, read_json_list
from channels.base import (
    CallbackRejected,
    CallbackReply,
    CallbackRequest,
    CallbackResponse,
    Channel,
    DeliveryReport,
    DirectReply,
    Event,
    Message,
    PostedCallbacks,
    ProviderContext,
    ProviderFlags,
    SendError,
    SendResult,
)

# status_code -> (our status, the number is dead)
STATUSES: dict[str, tuple[str, bool]] = {
    "200000": ("delivered", False),  # heard the message through
    "200001": ("delivered", False),  # picked up, hung up before the end
    "200008": ("delivered", False),  # heard it, pressed no key in time
    "200002": ("busy", False),
    "200003": ("no_answer", False),  # rang, not picked up
    "200005": ("no_answer", False),  # could not be connected (refused, carrier)
    "200007": ("no_answer", False),  # out of service area
    "200010": ("no_answer", False),  # powered off
    "200011": ("failed", False),  # suspended (停机): may come back when paid
    "200004": ("failed", True),  # not a valid number
    "200006": ("failed", False),  # the audio could not be played
}
# Too many calls at once on the account: another provider may take it.
ELSEWHERE_STATUSES = {"200121", "200118"}
KEYPRESS_STATUS = "300000"
MAX_TEXT = 500


class AliyunVoiceProvider(PostedCallbacks):
    def __init__(self, settings: Mapping[str, Any], context: ProviderContext) -> None:
        self.name = "aliyun"
        self.channel = Channel.VOICE
        self.options = AliyunOptions.from_settings(settings)
        if not self.options.voice_tts_code:
            raise ValueError("[providers.aliyun] needs voice_tts_code for voice calls")
        self.flags = ProviderFlags(
            reports_delivery=True,
            receives_replies=True,
            recipient_limits=self.options.voice_recipient_limits,
        )
        self._context = context

    def send_params(self, message: Message) -> dict[str, str]:
        options = self.options
        params = {
            "CalledNumber": api_number(message.to),
            "TtsCode": options.voice_tts_code,
            "TtsParam": json.dumps(
                {options.voice_text_param: message.text[:MAX_TEXT]}, ensure_ascii=False
            ),
            "PlayTimes": str(min(3, max(1, message.repeat))),
            "Volume": str(options.voice_volume),
            "OutId": message.reference,
        }
        if options.voice_show_number:
            params["CalledShowNumber"] = options.voice_show_number
        return params

    async def send(self, message: Message) -> SendResult:
        answer = await call_rpc(
            self._context.http,
            self.options,
            self.options.voice_base_url,
            "SingleCallByTts",
            self.send_params(message),
            "SingleCallByTts",
        )
        call_id = answer.get("CallId")
        if not isinstance(call_id, str) or not call_id:
            raise SendError("aliyun SingleCallByTts: no CallId in the answer", retryable=True)
        return SendResult(provider_message_id=call_id)

    def parse_callback(self, request: CallbackRequest) -> list[Event]:
        events: list[Event] = []
        for item in read_json_list(request.body, "VoiceReport"):
            call_id, status = item.get("call_id"), str(item.get("status_code") or "")
            if not isinstance(call_id, str) or not call_id or not status:
                raise CallbackRejected("a VoiceReport item needs call_id and status_code")
            dtmf = str(item.get("dtmf") or "").strip()
            if status != KEYPRESS_STATUS:
                events.append(_report(call_id, status, item))
            if dtmf:
                # The first key counts, as with numDigits="1" on Twilio.
                events.append(DirectReply(call_id, dtmf[0], kind="keypress"))
        return events

    def callback_response(self, reply: CallbackReply | None = None) -> CallbackResponse:
        return accepted()


def _report(call_id: str, status: str, item: dict[str, Any]) -> DeliveryReport:
    message = str(item.get("status_msg") or "") or None
    if status in ELSEWHERE_STATUSES:
        return DeliveryReport(
            call_id, "failed", status, message, provider_status=status, other_provider=True
        )
    ours, dead = STATUSES.get(status, ("failed", False))
    error = None if ours == "delivered" else status
    return DeliveryReport(call_id, ours, error, message, provider_status=status, contact_bad=dead)
