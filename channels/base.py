"""The seam between the core and the outside world: what a channel provider is.

A provider knows one external API. The core hands it a `Message` and gets back a
`SendResult`, or a `SendError` saying whether trying again could help. Where the provider
calls back (delivery receipts, replies, keypresses, playback reports), the core hands it
the request as a plain `CallbackRequest` and gets back a list of `Event`s; the provider
never sees FastAPI, the database or the queue.

Errors, drawn once:

    ChannelError
    ├── SendError          a send failed; `retryable` says whether to try again later,
    │                      `contact_bad` that this address will never work,
    │                      `other_provider` that another provider may carry it
    └── CallbackRejected   a callback failed verification or could not be read; carries
                           the HTTP status to answer with

To add a provider: write a class with the attributes and methods of `Provider` in its own
module (the only module that may import the vendor's SDK), give its settings and the
shared `ProviderContext` to its constructor, register a factory in
`channels/registry.py`, and add its settings section to `dispatcher/config.py`. Declare
what it can do in `ProviderFlags`; the core owns everything around a send: routing by
number prefix, rate limits, the circuit breaker and failover, retries and the records.
Raise `SendError(retryable=True)` for what may pass (timeouts, 5xx, rate limiting: these
also count against the provider's circuit breaker) and `retryable=False` for what will
not (a bad number: add `contact_bad=True`). A provider whose API takes many numbers in
one request sets `max_batch` and implements `send_many`. A provider that receives
reports on a connection of its own (MQTT) sets `listens` and implements `listen`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import httpx


class Channel(StrEnum):
    SMS = "sms"
    WECHAT = "wechat"
    VOICE = "voice"
    SPEAKER = "speaker"


@dataclass(frozen=True)
class Message:
    """One thing to deliver to one address."""

    channel: Channel
    to: str
    text: str
    # Our reference for this send ("attempt:12", "broadcast:3"); providers echo it where
    # the API has a slot for it (OutId, task_id) so callbacks can be matched.
    reference: str
    # Stable identity of the person or device behind `to` (simulated recipients use it).
    recipient_key: str
    title: str = ""
    answer_url: str | None = None
    expects_answer: bool = True
    repeat: int = 1


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str


@dataclass(frozen=True)
class ProviderFlags:
    """What a provider can do, declared rather than probed."""

    reports_delivery: bool = False
    receives_replies: bool = False
    reports_playback: bool = False
    # Number prefixes this provider cannot carry replies from (Twilio and "+86"): texts
    # sent there must not ask for a reply and carry the answer link instead.
    one_way_prefixes: tuple[str, ...] = ()
    # Number prefixes replies come back from, when only some can (Aliyun and Tencent carry
    # replies from mainland numbers only); empty means every prefix not one-way.
    reply_prefixes: tuple[str, ...] = ()
    # Reports arrive on a connection the provider keeps itself (`listen`), not over HTTP.
    listens: bool = False
    # Sends one recipient may get: (count, window seconds) pairs the core keeps to, for
    # providers that drop the excess silently (WeCom) or refuse it (Aliyun voice).
    recipient_limits: tuple[tuple[int, float], ...] = ()
    # After a tap on this provider's card is taken, `confirm_answer` shows it on the card.
    confirms_answers: bool = False
    # How many messages one `send_many` request may carry (Aliyun SendBatchSms: 100);
    # 1 means the provider has no batch API and the core calls `send` for each.
    max_batch: int = 1

    def two_way(self, to: str) -> bool:
        """Can a reply from `to` come back through this provider?"""
        if not self.receives_replies or to.startswith(self.one_way_prefixes):
            return False
        return not self.reply_prefixes or to.startswith(self.reply_prefixes)


@dataclass(frozen=True)
class CallbackRequest:
    """An inbound HTTP request as a provider needs to see it."""

    url: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class CallbackReply:
    """What the core wants said on a live channel that is waiting (a call after a keypress)."""

    say: str = ""
    # Read this again and wait for another keypress ("press 9 to hear it again").
    replay: str | None = None


@dataclass(frozen=True)
class CallbackResponse:
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    body: str = ""


# --- events a provider reports back -------------------------------------------------


@dataclass(frozen=True)
class DeliveryReport:
    """A message reached (or failed to reach) its recipient."""

    provider_message_id: str
    status: str  # sent | delivered | failed | no_answer | busy
    error_code: str | None = None
    error_message: str | None = None
    # The provider's own word for the status ("undelivered", "machine_start"...).
    provider_status: str | None = None
    # The address will never work (unknown number): mark the contact bad.
    contact_bad: bool = False
    # This provider refused the message (filtered as spam); another one may not.
    other_provider: bool = False


@dataclass(frozen=True)
class InboundText:
    """A text someone sent us (an SMS reply), to be matched by the sender's address."""

    sender: str
    text: str
    provider_message_id: str | None = None


@dataclass(frozen=True)
class DirectReply:
    """An answer given on one particular message: a keypress in a call, a card button."""

    provider_message_id: str
    value: str
    kind: str = "keypress"  # keypress | button
    # Who tapped (a WeCom userid), and what the provider needs to show the answer on the
    # message afterwards (WeCom's single-use ResponseCode); see `Provider.confirm_answer`.
    sender: str | None = None
    receipt: str | None = None


@dataclass(frozen=True)
class PlaybackReport:
    """A speaker played (or failed to play) a broadcast."""

    provider_message_id: str
    played: bool
    error_message: str | None = None


@dataclass(frozen=True)
class Handshake:
    """The provider checks our callback URL (WeCom's echostr): answer with `answer`."""

    answer: str


Event = DeliveryReport | InboundText | DirectReply | PlaybackReport | Handshake


# --- errors ---------------------------------------------------------------------------


class ChannelError(Exception):
    """Base of every error raised across the channel seam."""


class SendError(ChannelError):
    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        contact_bad: bool = False,
        other_provider: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.contact_bad = contact_bad
        # This provider cannot carry this message (region not enabled, filtered); another
        # provider on the route may.
        self.other_provider = other_provider


class CallbackRejected(ChannelError):
    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# --- what a provider gets and is ------------------------------------------------------

ScheduleCallback = Callable[[CallbackRequest, float], Awaitable[None]]
DeliverCallback = Callable[[CallbackRequest], Awaitable[None]]


@dataclass(frozen=True)
class ProviderContext:
    """Shared things injected into every provider."""

    http: httpx.AsyncClient
    # Where the provider's callbacks arrive, e.g. "https://jy.example.gov.cn/hooks/sms/twilio".
    callback_url: str
    # Lets a simulated provider feed a callback back after a delay (seconds), through the
    # same path a real callback takes. Real providers do not use it.
    schedule_callback: ScheduleCallback


class PostedCallbacks:
    """Defaults for a provider whose vendor posts its callbacks over HTTP: no batch API,
    nothing to listen to, no answer to confirm in place, nothing of its own to close. A
    provider inherits it and overrides only what it does differently."""

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult | SendError]:
        raise NotImplementedError(f"{type(self).__name__} has no batch API (max_batch 1)")

    async def listen(self, deliver: DeliverCallback) -> None:
        raise NotImplementedError(f"{type(self).__name__} receives its callbacks over HTTP")

    async def confirm_answer(self, reply: DirectReply, label: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Provider(Protocol):
    name: str
    channel: Channel
    flags: ProviderFlags

    async def send(self, message: Message) -> SendResult:
        """Hand the message to the provider; raise `SendError` if it was not accepted."""
        ...

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult | SendError]:
        """Only with `flags.max_batch` > 1: hand up to that many messages over in one
        request. Returns one outcome per message, in order (a number the provider refused
        is a `SendError` in its place); raises `SendError` when the whole request failed."""
        ...

    def parse_callback(self, request: CallbackRequest) -> list[Event]:
        """Verify and read a callback; raise `CallbackRejected` if it cannot be trusted."""
        ...

    def callback_response(self, reply: CallbackReply | None = None) -> CallbackResponse:
        """What to answer the provider once its callback has been taken.

        `reply` is what the core wants said back where the channel is live (a call in
        progress after a keypress); providers without a live channel ignore it.
        """
        ...

    async def listen(self, deliver: DeliverCallback) -> None:
        """Only with `flags.listens`: receive reports until cancelled, handing each over."""
        ...

    async def confirm_answer(self, reply: DirectReply, label: str) -> None:
        """Only with `flags.confirms_answers`: show `label` ("已确认") where `reply` was
        given (the card's buttons). Raise `SendError` if the provider refused."""
        ...

    async def aclose(self) -> None: ...
