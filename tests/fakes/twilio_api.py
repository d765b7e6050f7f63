"""A stateful fake of Twilio's REST API (2010-04-01) for Messages and Calls.

It answers what the real API answers (see ../shared/specs/twilio_api_v2010.json): form
POSTs to `/2010-04-01/Accounts/{AccountSid}/Messages.json` and `/Calls.json` with Basic
auth, `201` with the resource JSON, or an error body `{code, message, more_info, status}`
(20003 bad credentials, 21211 invalid To, 21610 unsubscribed, 21602/21603/21604 missing
fields, 20500 when told to fail, 20429 when told to throttle).

Like GoAlert's mocktwilio, nothing happens on its own: the test calls `progress()` and
each message or call moves on to the fate set for its number, POSTing every callback to
the app signed with `X-Twilio-Signature` (computed here from Twilio's documented rule,
not with the library, so the two are checked against each other). A call reads the
TwiML it was given, "presses" its digits by POSTing `Digits` to the Gather `action`, and
keeps the TwiML each keypress got back. `send_sms` posts an inbound text. Callback URLs
may carry Twilio's `#rc=N` connection override: a 5xx is then retried up to N times.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """base64(HMAC-SHA1(token, url + each name and value, sorted by name))."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


@dataclass
class CallFate:
    """What the person at a number does with a call."""

    outcome: str = "answer"  # answer | no-answer | busy | failed | machine
    digits: list[str] = field(default_factory=list)


@dataclass
class Posted:
    url: str
    params: dict[str, str]
    status: int
    body: str
    tries: int = 1


@dataclass
class FakeTwilio:
    account_sid: str = "AC" + "5" * 32
    auth_token: str = "fake-auth-token"
    number: str = "+15005550006"
    # Where inbound texts to `number` go (the number's "a message comes in" webhook).
    sms_webhook: str = ""
    invalid_numbers: set[str] = field(default_factory=set)
    unsubscribed: set[str] = field(default_factory=set)
    # (MessageStatus, ErrorCode) per destination; default delivered.
    sms_fate: dict[str, tuple[str, str]] = field(default_factory=dict)
    call_fate: dict[str, CallFate] = field(default_factory=dict)
    # While set, every API request fails with this (HTTP status, Twilio code).
    failing: tuple[int, int] | None = None
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    posted: list[Posted] = field(default_factory=list)
    api_requests: int = 0
    _pending: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        base = "/2010-04-01/Accounts/{sid}"
        self.app = Starlette(
            routes=[
                Route(base + "/Messages.json", self._create_message, methods=["POST"]),
                Route(base + "/Calls.json", self._create_call, methods=["POST"]),
            ]
        )
        self.http = httpx.AsyncClient(timeout=10)

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- the REST API -------------------------------------------------------------------

    async def _check(self, request: Request) -> JSONResponse | dict[str, str]:
        self.api_requests += 1
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}" or (
            request.path_params["sid"] != self.account_sid
        ):
            return _error(401, 20003, "Authenticate")
        if self.failing is not None:
            status, code = self.failing
            return _error(status, code, "An internal server error has occurred")
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return _error(400, 20001, "Content-Type must be application/x-www-form-urlencoded")
        body = (await request.body()).decode()
        form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        form["_StatusCallbackEvent"] = " ".join(parse_qs(body).get("StatusCallbackEvent", []))
        to = form.get("To", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not E164.match(to) or to in self.invalid_numbers:
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        return form

    def _resource(self, kind: str, sid: str) -> dict[str, Any]:
        now = format_datetime(datetime.now(UTC))
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/{kind}/{sid}.json",
        }

    async def _create_message(self, request: Request) -> JSONResponse:
        form = await self._check(request)
        if isinstance(form, JSONResponse):
            return form
        if form["To"] in self.unsubscribed:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return _error(400, 21603, "A 'From' phone number is required.")
        if not form.get("Body"):
            return _error(400, 21602, "Message body is required.")
        sid = _sid("SM")
        message = {
            **self._resource("Messages", sid),
            "body": form["Body"],
            "from": form.get("From"),
            "to": form["To"],
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "status": "accepted" if form.get("MessagingServiceSid") else "queued",
            "num_segments": str(-(-len(form["Body"]) // 70)),
            "num_media": "0",
            "error_code": None,
            "error_message": None,
            "date_sent": None,
            "subresource_uris": {"media": f"/Messages/{sid}/Media.json"},
            "_status_callback": form.get("StatusCallback", ""),
        }
        self.messages[sid] = message
        self._pending.append(("message", sid))
        return JSONResponse({k: v for k, v in message.items() if not k.startswith("_")}, 201)

    async def _create_call(self, request: Request) -> JSONResponse:
        form = await self._check(request)
        if isinstance(form, JSONResponse):
            return form
        if not form.get("From"):
            return _error(400, 21603, "A 'From' phone number is required.")
        if not form.get("Twiml") and not form.get("Url") and not form.get("ApplicationSid"):
            return _error(400, 21205, "Url parameter is required.")
        if len(form.get("Twiml", "")) > 4000:
            return _error(400, 21217, "Twiml is too long.")
        sid = _sid("CA")
        call = {
            **self._resource("Calls", sid),
            "to": form["To"],
            "to_formatted": form["To"],
            "from": form["From"],
            "from_formatted": form["From"],
            "status": "queued",
            "answered_by": None,
            "duration": None,
            "start_time": None,
            "end_time": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "queue_time": "0",
            "subresource_uris": {},
            "_twiml": form.get("Twiml", ""),
            "_status_callback": form.get("StatusCallback", ""),
            "_events": form["_StatusCallbackEvent"] or "completed",
            "_machine_detection": form.get("MachineDetection", ""),
            "_timeout": form.get("Timeout", "60"),
            "_responses": [],
        }
        self.calls[sid] = call
        self._pending.append(("call", sid))
        return JSONResponse({k: v for k, v in call.items() if not k.startswith("_")}, 201)

    # --- what happens next, when the test says so -------------------------------------

    async def progress(self) -> None:
        """Move every message and call created so far to its fate, posting callbacks."""
        pending, self._pending = self._pending, []
        for kind, sid in pending:
            if kind == "message":
                await self._message_fate(self.messages[sid])
            else:
                await self._call_fate(self.calls[sid])

    async def _message_fate(self, message: dict[str, Any]) -> None:
        status, code = self.sms_fate.get(message["to"], ("delivered", ""))
        steps = [("sent", "")] + ([(status, code)] if status != "sent" else [])
        for step, error in steps:
            message["status"], message["error_code"] = step, error or None
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": "2010-04-01",
                "From": message["from"] or "",
                "MessageSid": message["sid"],
                "MessageStatus": step,
                "SmsSid": message["sid"],
                "SmsStatus": step,
                "To": message["to"],
            }
            if error:
                params["ErrorCode"] = error
            await self.post(message["_status_callback"], params)

    async def _call_fate(self, call: dict[str, Any]) -> None:
        fate = self.call_fate.get(call["to"], CallFate("answer"))
        base = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": call["sid"],
            "Called": call["to"],
            "Caller": call["from"],
            "Direction": "outbound-api",
            "From": call["from"],
            "To": call["to"],
        }
        if fate.outcome in ("answer", "machine"):
            call["status"] = "in-progress"
            gather = ET.fromstring(call["_twiml"]).find("Gather")
            for digit in fate.digits if fate.outcome == "answer" else []:
                assert gather is not None, "the call's TwiML has no <Gather>"
                params = {**base, "CallStatus": "in-progress", "Digits": digit}
                posted = await self.post(gather.get("action", ""), params)
                call["_responses"].append(posted.body)
                gather = ET.fromstring(posted.body).find("Gather")
                if gather is None:
                    break
            status = "completed"
        else:
            status = fate.outcome
        call["status"] = status
        final = {**base, "CallStatus": status, "SequenceNumber": "0"}
        if status == "completed":
            final["CallDuration"] = "31"
            if call["_machine_detection"]:
                final["AnsweredBy"] = "machine_start" if fate.outcome == "machine" else "human"
        await self.post(call["_status_callback"], final)

    async def send_sms(self, from_: str, body: str) -> Posted:
        """Someone texts our number."""
        sid = _sid("SM")
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "Body": body,
            "From": from_,
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": self.number,
        }
        return await self.post(self.sms_webhook, params)

    async def post(self, url: str, params: dict[str, str], signature: str | None = None) -> Posted:
        """POST a signed callback; honours a `#rc=N&rp=5xx` override by retrying 5xx."""
        url, _, fragment = url.partition("#")
        retries = int(parse_qs(fragment).get("rc", ["0"])[0])
        sig = signature if signature is not None else twilio_signature(self.auth_token, url, params)
        headers = {"X-Twilio-Signature": sig} if sig else {}
        tries = 0
        while True:
            tries += 1
            response = await self.http.post(url, data=params, headers=headers)
            if response.status_code < 500 or tries > retries:
                break
        posted = Posted(url, params, response.status_code, response.text, tries)
        self.posted.append(posted)
        return posted
