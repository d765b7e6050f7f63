"""What Twilio's SMS and voice providers share: the client, signatures, error meanings.

The real `twilio` library does the talking. Its `Client(http_client=...)` takes any
`twilio.http.HttpClient`; `HttpxTwilioClient` is an `AsyncHttpClient` (used by the
library's `create_async`) that sends through the project's shared `httpx.AsyncClient`
and rewrites `https://api.twilio.com` to the configured `base_url`, so tests and drills
talk to a local fake with the same code that talks to Twilio.

Callbacks are verified with `RequestValidator` over the public URL they were posted to
(`CallbackRequest.url`, rebuilt from `app.public_base_url`) and every form field.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from channels.base import CallbackRejected, CallbackRequest, CallbackResponse, SendError

log = logging.getLogger(__name__)
TWILIO_API = "https://api.twilio.com"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

# Synchronous API error codes (TwilioRestException.code) and what they mean for us.
BAD_NUMBER_CODES = {"21211", "21214", "21217", "21401", "21407", "21614"}
UNSUBSCRIBED_CODES = {"21610"}
OTHER_PROVIDER_CODES = {"21408", "21612", "30007"}
RETRYABLE_CODES = {"20429", "20500", "20503", "20003", "20005"}
# Asynchronous ErrorCode in a status callback.
DEAD_NUMBER_CODES = {"30004", "30005", "21610", "21211", "21614"}
FILTERED_CODES = {"30007", "30008"}


@dataclass(frozen=True)
class TwilioOptions:
    """The `[providers.twilio]` settings, as the providers read them."""

    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""
    messaging_service_sid: str = ""
    base_url: str = TWILIO_API
    voice_language: str = "zh-CN"
    voice: str = ""
    sms_rate_per_s: float = 1.0
    voice_rate_per_s: float = 1.0
    ring_timeout_s: int = 45
    gather_timeout_s: int = 8
    machine_detection: bool = True
    one_way_prefixes: tuple[str, ...] = ("+86",)
    callback_retries: int = 3
    validity_period_s: int = 3600

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> TwilioOptions:
        values = dict(settings)
        values["one_way_prefixes"] = tuple(values.get("one_way_prefixes", ("+86",)))
        options = cls(**values)
        if not options.account_sid or not options.auth_token:
            raise ValueError("[providers.twilio] needs account_sid and auth_token")
        return options


class HttpxTwilioClient(AsyncHttpClient):
    """The twilio library's async HTTP seam, on the shared httpx client."""

    def __init__(self, http: httpx.AsyncClient, base_url: str = TWILIO_API) -> None:
        super().__init__(logger=log, is_async=True, timeout=None)
        self._http = http
        self._base_url = base_url.rstrip("/")

    async def request(  # type: ignore[override]
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the library's signature
        allow_redirects: bool = False,
    ) -> Response:
        url = uri
        if uri.startswith(TWILIO_API):
            url = self._base_url + uri[len(TWILIO_API) :]
        response = await self._http.request(
            method.upper(),
            url,
            params=params,  # type: ignore[arg-type]
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            follow_redirects=allow_redirects,
        )
        return Response(response.status_code, response.text, response.headers)


def make_client(options: TwilioOptions, http: httpx.AsyncClient) -> Client:
    return Client(
        options.account_sid,
        options.auth_token,
        http_client=HttpxTwilioClient(http, options.base_url),
        environment={},
    )


def with_retries(url: str, retries: int) -> str:
    """A callback URL asking Twilio to retry on a 5xx (connection override fragment)."""
    return f"{url}#rc={retries}&rp=5xx,ct,rt" if retries else url


def verify(request: CallbackRequest, options: TwilioOptions) -> None:
    """Raise `CallbackRejected(403)` unless the request carries Twilio's signature."""
    signature = next(
        (v for k, v in request.headers.items() if k.lower() == "x-twilio-signature"), ""
    )
    if not signature:
        raise CallbackRejected("missing X-Twilio-Signature", 403)
    validator = RequestValidator(options.auth_token)
    # Whether Twilio signs the URL with its connection-override fragment is not
    # documented; accept either form.
    candidates = [request.url, with_retries(request.url, options.callback_retries)]
    if not any(validator.validate(url, dict(request.form), signature) for url in candidates):
        raise CallbackRejected("X-Twilio-Signature does not match", 403)


def twiml_response(twiml: str = EMPTY_TWIML) -> CallbackResponse:
    return CallbackResponse(status=200, content_type="text/xml; charset=utf-8", body=twiml)


def send_error(exc: Exception, what: str) -> SendError:
    """Translate what the library raised into the project's `SendError`."""
    if isinstance(exc, TwilioRestException):
        code = str(exc.code) if exc.code is not None else str(exc.status)
        message = f"twilio {what}: {exc.status} {code} {exc.msg}"
        if code in BAD_NUMBER_CODES:
            return SendError(message, code=code, contact_bad=True)
        if code in UNSUBSCRIBED_CODES:
            return SendError(message, code=code, contact_bad=True)
        if code in OTHER_PROVIDER_CODES:
            return SendError(message, code=code, other_provider=True)
        retryable = exc.status >= 500 or exc.status in (401, 429) or code in RETRYABLE_CODES
        return SendError(message, code=code, retryable=retryable)
    if isinstance(exc, httpx.HTTPError):
        return SendError(f"twilio {what}: {type(exc).__name__}", code="network", retryable=True)
    if isinstance(exc, TwilioException):
        return SendError(f"twilio {what}: {exc}", retryable=True)
    return SendError(f"twilio {what}: {type(exc).__name__}: {exc}", retryable=True)
