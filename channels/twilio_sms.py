"""Twilio SMS: send with a status callback; read delivery receipts and inbound replies.

Receipts (`MessageStatus`) map to attempt statuses: sent, delivered, and undelivered /
failed as failed, with Twilio's `ErrorCode`: a dead number (30005, 21610 STOP...) marks
the contact bad, a filtered message (30007) goes to the next provider. Replies arrive on
the same hook (configure the number's "A message comes in" webhook to
`/hooks/sms/twilio`). Twilio carries no replies from mainland China numbers: those are
declared `one_way_prefixes`, so the core sends them the answer link instead of "reply 1".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from channels.twilio_common import (
    DEAD_NUMBER_CODES,
    FILTERED_CODES,
    TwilioOptions,
    make_client,
    send_error,
    twiml_response,
    verify,
    with_retries,
)

MAX_BODY = 1600
# Twilio's MessageStatus -> ours; statuses not listed (queued, sending...) report nothing.
STATUSES = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}


class TwilioSmsProvider(PostedCallbacks):
    def __init__(self, settings: Mapping[str, Any], context: ProviderContext) -> None:
        self.name = "twilio"
        self.channel = Channel.SMS
        self.options = TwilioOptions.from_settings(settings)
        self.flags = ProviderFlags(
            reports_delivery=True,
            receives_replies=True,
            one_way_prefixes=self.options.one_way_prefixes,
        )
        self._context = context
        self._client = make_client(self.options, context.http)

    async def send(self, message: Message) -> SendResult:
        options = self.options
        sender: dict[str, str] = (
            {"messaging_service_sid": options.messaging_service_sid}
            if options.messaging_service_sid
            else {"from_": options.from_number}
        )
        try:
            created = await self._client.messages.create_async(
                to=message.to,
                body=message.text[:MAX_BODY],
                status_callback=with_retries(self._context.callback_url, options.callback_retries),
                validity_period=options.validity_period_s,
                **sender,  # type: ignore[arg-type]
            )
        except Exception as exc:
            raise send_error(exc, "message") from exc
        if not created.sid:
            raise SendError("twilio message: no sid in the answer", retryable=True)
        return SendResult(provider_message_id=created.sid)

    def parse_callback(self, request: CallbackRequest) -> list[Event]:
        verify(request, self.options)
        form = request.form
        if "Body" in form and "From" in form:
            return [InboundText(form["From"], form["Body"], form.get("MessageSid"))]
        sid, raw = form.get("MessageSid"), form.get("MessageStatus") or form.get("SmsStatus")
        if not sid or not raw:
            raise CallbackRejected("a Twilio SMS callback needs MessageSid and MessageStatus")
        status = STATUSES.get(raw)
        if status is None:
            return []
        code = form.get("ErrorCode") or None
        return [
            DeliveryReport(
                sid,
                status,
                error_code=code,
                error_message=form.get("ErrorMessage") or None,
                provider_status=raw,
                contact_bad=code in DEAD_NUMBER_CODES,
                other_provider=code in FILTERED_CODES,
            )
        ]

    def callback_response(self, reply: CallbackReply | None = None) -> CallbackResponse:
        # Replies go out as messages of their own; the webhook answers with empty TwiML.
        return twiml_response()
