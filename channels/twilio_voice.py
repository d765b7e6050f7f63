"""Twilio voice robocalls: the warning read aloud, then one keypress answers.

The call carries its TwiML inline: `<Gather input="dtmf" numDigits="1">` around the
warning text (from the core's `call_voice` template) said `repeat` times in the
configured language and voice, then a hang-up if nothing is pressed. The keypress is
POSTed to the Gather `action` (our hook): 1 = received, 2 = need help, 9 = hear it again;
the core decides and this provider answers with the TwiML for it. The final call status
reports the outcome: completed (a person listened), no-answer, busy, failed, or an
answering machine (`AnsweredBy` machine_* / fax), which is no answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twilio.twiml.voice_response import Gather, VoiceResponse

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
from channels.twilio_common import (
    TwilioOptions,
    make_client,
    send_error,
    twiml_response,
    verify,
    with_retries,
)

MAX_TWIML = 4000
STATUSES = {"completed": "delivered", "busy": "busy", "no-answer": "no_answer"}
FAILED_STATUSES = {"failed", "canceled"}
PENDING_STATUSES = {"queued", "initiated", "ringing", "in-progress"}


class TwilioVoiceProvider(PostedCallbacks):
    def __init__(self, settings: Mapping[str, Any], context: ProviderContext) -> None:
        self.name = "twilio"
        self.channel = Channel.VOICE
        self.options = TwilioOptions.from_settings(settings)
        if not self.options.from_number:
            raise ValueError("[providers.twilio] needs from_number for voice calls")
        self.flags = ProviderFlags(reports_delivery=True, receives_replies=True)
        self._context = context
        self._client = make_client(self.options, context.http)

    def _say(self, target: VoiceResponse | Gather, text: str) -> None:
        voice = {"voice": self.options.voice} if self.options.voice else {}
        target.say(text, language=self.options.voice_language, **voice)

    def _gather(self, text: str, repeat: int) -> Gather:
        gather = Gather(
            input="dtmf",
            num_digits=1,
            action=self._context.callback_url,
            method="POST",
            timeout=self.options.gather_timeout_s,
        )
        for _ in range(max(1, repeat)):
            self._say(gather, text)
        return gather

    def call_twiml(self, text: str, repeat: int = 1) -> str:
        """The TwiML that reads `text` `repeat` times and waits for one key."""
        response = VoiceResponse()
        response.append(self._gather(text, repeat))
        # No key pressed: Gather falls through to here.
        response.hangup()
        return str(response)

    async def send(self, message: Message) -> SendResult:
        twiml = self.call_twiml(message.text, message.repeat)
        if len(twiml) > MAX_TWIML:
            twiml = self.call_twiml(message.text, 1)
        if len(twiml) > MAX_TWIML:
            raise SendError(f"voice text too long for inline TwiML ({len(twiml)} > {MAX_TWIML})")
        extra: dict[str, Any] = {}
        if self.options.machine_detection:
            extra["machine_detection"] = "Enable"
        try:
            created = await self._client.calls.create_async(
                to=message.to,
                from_=self.options.from_number,
                twiml=twiml,
                status_callback=with_retries(
                    self._context.callback_url, self.options.callback_retries
                ),
                status_callback_event=["completed"],
                status_callback_method="POST",
                timeout=self.options.ring_timeout_s,
                **extra,
            )
        except Exception as exc:
            raise send_error(exc, "call") from exc
        if not created.sid:
            raise SendError("twilio call: no sid in the answer", retryable=True)
        return SendResult(provider_message_id=created.sid)

    def parse_callback(self, request: CallbackRequest) -> list[Event]:
        verify(request, self.options)
        form = request.form
        sid = form.get("CallSid")
        if not sid:
            raise CallbackRejected("a Twilio voice callback needs CallSid")
        if "Digits" in form:
            return [DirectReply(sid, form["Digits"], kind="keypress")] if form["Digits"] else []
        raw = form.get("CallStatus", "")
        if raw in PENDING_STATUSES:
            return []
        answered_by = form.get("AnsweredBy", "")
        code = form.get("ErrorCode") or None
        if raw == "completed" and (answered_by.startswith("machine") or answered_by == "fax"):
            report = DeliveryReport(
                sid, "no_answer", error_code="machine", provider_status=answered_by
            )
            return [report]
        if raw in FAILED_STATUSES:
            return [DeliveryReport(sid, "failed", error_code=code, provider_status=raw)]
        if raw not in STATUSES:
            raise CallbackRejected(f"unknown CallStatus {raw!r}")
        return [DeliveryReport(sid, STATUSES[raw], error_code=code, provider_status=raw)]

    def callback_response(self, reply: CallbackReply | None = None) -> CallbackResponse:
        if reply is None:
            return twiml_response()
        response = VoiceResponse()
        if reply.say:
            self._say(response, reply.say)
        if reply.replay is not None:
            response.append(self._gather(reply.replay, 1))
        response.hangup()
        return twiml_response(str(response))
