"""Providers that act out their recipients, for the demo, drills and tests.

Each recipient (by `Message.recipient_key`) gets a stable persona from the seed: some
answer quickly, some late, some ask for help, some stay silent whatever is tried. A send
is accepted at once; a delivery receipt and, where the persona answers, a reply follow
after a delay, posted through `ProviderContext.schedule_callback` so they travel the same
path a real provider's callback takes: `parse_callback` here, then the core's handling.

The callback forms borrow Twilio's field names (`MessageSid`, `MessageStatus`, `From`,
`Body`, `CallSid`, `CallStatus`, `Digits`), so the shapes are familiar.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from channels.base import (
    CallbackRejected,
    CallbackReply,
    CallbackRequest,
    CallbackResponse,
    Channel,
    DeliverCallback,
    DeliveryReport,
    DirectReply,
    Event,
    InboundText,
    Message,
    PlaybackReport,
    ProviderContext,
    ProviderFlags,
    SendError,
    SendResult,
)

# Messages one `send_many` takes, as a vendor's batch API would (`[providers.simulated]
# max_batch`; 1 makes the core send them one by one).
DEFAULT_MAX_BATCH = 100


@dataclass(frozen=True)
class SimulatedBehaviour:
    delivery_rate: float = 0.97
    answer_rate: float = 0.8
    help_rate: float = 0.05
    speaker_fail_rate: float = 0.05
    min_delay_s: float = 1.0
    max_delay_s: float = 30.0
    seed: int = 1
    delivery_receipts: bool = True


def _unit(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) for the given parts."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Persona:
    answers: bool
    needs_help: bool
    delay_s: float


def persona_for(behaviour: SimulatedBehaviour, recipient_key: str) -> Persona:
    seed = behaviour.seed
    span = behaviour.max_delay_s - behaviour.min_delay_s
    return Persona(
        answers=_unit(seed, "answers", recipient_key) < behaviour.answer_rate,
        needs_help=_unit(seed, "help", recipient_key) < behaviour.help_rate,
        delay_s=behaviour.min_delay_s + span * _unit(seed, "delay", recipient_key),
    )


_RECEIPT_FIELDS = {
    Channel.SMS: ("MessageSid", "MessageStatus"),
    Channel.VOICE: ("CallSid", "CallStatus"),
    Channel.WECHAT: ("MsgId", "Status"),
    Channel.SPEAKER: ("FrameId", "Result"),
}
_VOICE_STATUS = {"completed": "delivered", "no-answer": "no_answer", "busy": "busy"}


class SimulatedProvider:
    """A provider for any channel whose recipients are simulated."""

    def __init__(
        self,
        channel: Channel,
        behaviour: SimulatedBehaviour,
        context: ProviderContext,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.name = "simulated"
        self.channel = channel
        self.flags = ProviderFlags(
            reports_delivery=True,
            receives_replies=channel is not Channel.SPEAKER,
            reports_playback=channel is Channel.SPEAKER,
            max_batch=max_batch,
        )
        self._behaviour = behaviour
        self._context = context

    async def send(self, message: Message) -> SendResult:
        provider_id = f"SIM{self.channel.value[:2].upper()}{secrets.token_hex(12)}"
        for form, delay in self._act_out(message, provider_id):
            request = CallbackRequest(url=self._context.callback_url, form=form)
            await self._context.schedule_callback(request, delay)
        return SendResult(provider_message_id=provider_id)

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult | SendError]:
        """Accept every message, as a batch API would; their callbacks are scheduled at once."""
        results: list[SendResult | SendError] = []
        scheduled = []
        for message in messages:
            provider_id = f"SIM{self.channel.value[:2].upper()}{secrets.token_hex(12)}"
            for form, delay in self._act_out(message, provider_id):
                request = CallbackRequest(url=self._context.callback_url, form=form)
                scheduled.append(self._context.schedule_callback(request, delay))
            results.append(SendResult(provider_message_id=provider_id))
        await asyncio.gather(*scheduled)
        return results

    def _act_out(self, message: Message, provider_id: str) -> list[tuple[dict[str, str], float]]:
        behaviour = self._behaviour
        id_field, status_field = _RECEIPT_FIELDS[self.channel]
        persona = persona_for(behaviour, message.recipient_key)
        receipt_delay = min(persona.delay_s, behaviour.min_delay_s)
        reached = _unit(behaviour.seed, "reach", message.reference) < behaviour.delivery_rate

        if self.channel is Channel.SPEAKER:
            played = _unit(behaviour.seed, "speaker", message.recipient_key) >= (
                behaviour.speaker_fail_rate
            )
            result = "ok" if played and reached else "设备离线"
            return [({id_field: provider_id, status_field: result}, receipt_delay)]

        if not reached:
            failed = {Channel.VOICE: "no-answer"}.get(self.channel, "failed")
            form = {id_field: provider_id, status_field: failed, "ErrorCode": "SIM404"}
            return [(form, receipt_delay)]

        events: list[tuple[dict[str, str], float]] = []
        receipts = behaviour.delivery_receipts
        if self.channel is Channel.VOICE:
            if persona.answers and message.expects_answer:
                digit = "2" if persona.needs_help else "1"
                events.append(({"CallSid": provider_id, "Digits": digit}, persona.delay_s))
                if receipts:
                    events.append(
                        ({"CallSid": provider_id, "CallStatus": "completed"}, persona.delay_s)
                    )
            elif receipts:
                events.append(({"CallSid": provider_id, "CallStatus": "no-answer"}, receipt_delay))
            return events

        if receipts:
            events.append(({id_field: provider_id, status_field: "delivered"}, receipt_delay))
        if persona.answers and message.expects_answer:
            if self.channel is Channel.SMS:
                text = "2 需要支援" if persona.needs_help else "1"
                form = {"From": message.to, "Body": text, "MessageSid": f"SIMIN{provider_id}"}
            else:
                key = "help" if persona.needs_help else "received"
                form = {"MsgId": provider_id, "EventKey": key, "FromUserName": message.to}
            events.append((form, persona.delay_s))
        return events

    def parse_callback(self, request: CallbackRequest) -> list[Event]:
        form = request.form
        if self.channel is Channel.SPEAKER:
            if "FrameId" not in form or "Result" not in form:
                raise CallbackRejected("speaker report needs FrameId and Result")
            played = form["Result"] == "ok"
            reason = None if played else form["Result"]
            return [PlaybackReport(form["FrameId"], played=played, error_message=reason)]
        if self.channel is Channel.SMS and "From" in form and "Body" in form:
            return [InboundText(form["From"], form["Body"], form.get("MessageSid"))]
        if self.channel is Channel.VOICE and "CallSid" in form and "Digits" in form:
            return [DirectReply(form["CallSid"], form["Digits"], kind="keypress")]
        if self.channel is Channel.WECHAT and "MsgId" in form and "EventKey" in form:
            return [DirectReply(form["MsgId"], form["EventKey"], kind="button")]
        id_field, status_field = _RECEIPT_FIELDS[self.channel]
        if id_field in form and status_field in form:
            raw_status = form[status_field]
            status = _VOICE_STATUS.get(raw_status, raw_status)
            if status not in {"sent", "delivered", "failed", "no_answer", "busy"}:
                raise CallbackRejected(f"unknown {status_field} {raw_status!r}")
            code = form.get("ErrorCode") or None
            return [DeliveryReport(form[id_field], status, error_code=code)]
        raise CallbackRejected(
            f"not a simulated {self.channel.value} callback: fields {sorted(form)}"
        )

    def callback_response(self, reply: CallbackReply | None = None) -> CallbackResponse:
        return CallbackResponse(body="ok")

    async def listen(self, deliver: DeliverCallback) -> None:
        raise NotImplementedError("simulated providers call back through schedule_callback")

    async def confirm_answer(self, reply: DirectReply, label: str) -> None:
        return None

    async def aclose(self) -> None:
        return None
