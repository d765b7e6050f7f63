"""What Aliyun's SMS and voice providers share: the signed RPC call, options, error meanings.

Both APIs are RPC-style and signed with ACS3-HMAC-SHA256 (what the official SDKs use now):
the parameters travel in the query string of a POST with an empty body, and

    canonical = "POST\\n/\\n" + sorted, RFC 3986-encoded query + "\\n"
                + each signed header "name:value\\n" (lower-case, sorted) + "\\n"
                + signed header names joined by ";" + "\\n" + hex(sha256(body))
    to_sign = "ACS3-HMAC-SHA256\\n" + hex(sha256(canonical))
    Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<names>,
                   Signature=hex(HMAC-SHA256(AccessKeySecret, to_sign))

with the headers host, x-acs-action, x-acs-version, x-acs-date (ISO 8601 UTC),
x-acs-signature-nonce and x-acs-content-sha256 signed. Aliyun answers HTTP 200 with
`{"Code": "OK", ...}` on success and often HTTP 200 with another `Code` on a business
error, so `Code` is what counts. Callbacks (SmsReport, SmsUp, VoiceReport) are HTTP
pushes without a signature of their own: the core protects their route with a secret
path token and an optional source-IP allowlist.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from channels.base import CallbackRejected, CallbackResponse, SendError

ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SIGNED_HEADERS = (
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
)

# Business codes (the `Code` of an HTTP 200 answer) and what they mean for us.
BAD_NUMBER_CODES = {"isv.MOBILE_NUMBER_ILLEGAL", "isv.CALLED_NUMBER_ILLEGAL"}
# The number is flow-controlled here, or the account cannot pay: another provider may
# carry it now; this one later.
ELSEWHERE_CODES = {
    "isv.BUSINESS_LIMIT_CONTROL",
    "isv.DAY_LIMIT_CONTROL",
    "isv.AMOUNT_NOT_ENOUGH",
    "isv.OUT_OF_SERVICE",
    "Throttling.User",
}
RETRYABLE_CODES = {
    "isp.RAM_PERMISSION_DENY",
    "isp.SYSTEM_ERROR",
    "Throttling",
    "ServiceUnavailable",
}


@dataclass(frozen=True)
class AliyunOptions:
    """The `[providers.aliyun]` settings, as the providers read them."""

    access_key_id: str = ""
    access_key_secret: str = ""
    sms_base_url: str = "https://dysmsapi.aliyuncs.com"
    sms_sign_name: str = ""
    sms_template_code: str = ""
    sms_text_param: str = "content"
    voice_base_url: str = "https://dyvmsapi.aliyuncs.com"
    voice_tts_code: str = ""
    voice_text_param: str = "content"
    voice_show_number: str = ""
    voice_volume: int = 100
    voice_recipient_limits: tuple[tuple[int, float], ...] = ((1, 60), (5, 3600), (20, 86400))
    sms_recipient_limits: tuple[tuple[int, float], ...] = ()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> AliyunOptions:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in settings.items() if k in known}
        for key in ("voice_recipient_limits", "sms_recipient_limits"):
            if key in values:
                values[key] = tuple((int(n), float(w)) for n, w in values[key])
        options = cls(**values)
        if not options.access_key_id or not options.access_key_secret:
            raise ValueError("[providers.aliyun] needs access_key_id and access_key_secret")
        return options


def percent(value: str) -> str:
    """RFC 3986 encoding, as the signature wants it (space is %20, '~' stays)."""
    return quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{percent(k)}={percent(params[k])}" for k in sorted(params))


def sign_headers(
    *,
    method: str,
    host: str,
    action: str,
    version: str,
    params: Mapping[str, str],
    access_key_id: str,
    access_key_secret: str,
    now: datetime,
    nonce: str,
    body: bytes = b"",
) -> dict[str, str]:
    """The headers of a signed ACS3-HMAC-SHA256 request, Authorization included."""
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "x-acs-date": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce,
        "x-acs-version": version,
    }
    canonical = "\n".join(
        [
            method,
            "/",
            canonical_query(params),
            "".join(f"{name}:{headers[name].strip()}\n" for name in SIGNED_HEADERS),
            ";".join(SIGNED_HEADERS),
            headers["x-acs-content-sha256"],
        ]
    )
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(access_key_secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={access_key_id},"
        f"SignedHeaders={';'.join(SIGNED_HEADERS)},Signature={signature}"
    )
    return headers


async def call_rpc(
    http: httpx.AsyncClient,
    options: AliyunOptions,
    base_url: str,
    action: str,
    params: Mapping[str, str],
    what: str,
) -> dict[str, Any]:
    """POST one signed RPC call; returns the JSON answer whose `Code` is "OK"."""
    host = urlsplit(base_url).netloc
    headers = sign_headers(
        method="POST",
        host=host,
        action=action,
        version="2017-05-25",
        params=params,
        access_key_id=options.access_key_id,
        access_key_secret=options.access_key_secret,
        now=datetime.now(UTC),
        nonce=secrets.token_hex(16),
    )
    url = f"{base_url.rstrip('/')}/?{canonical_query(params)}"
    try:
        response = await http.post(url, headers=headers, content=b"")
    except httpx.HTTPError as exc:
        reason = f"aliyun {what}: {type(exc).__name__}"
        raise SendError(reason, code="network", retryable=True) from exc
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise SendError(
            f"aliyun {what}: HTTP {response.status_code}, not JSON",
            code=str(response.status_code),
            retryable=response.status_code >= 500 or response.status_code == 429,
        )
    code = str(answer.get("Code", response.status_code))
    if code == "OK" and response.is_success:
        return answer
    raise business_error(code, str(answer.get("Message", "")), response.status_code, what)


def business_error(code: str, message: str, status: int, what: str) -> SendError:
    text = f"aliyun {what}: {code} {message}".strip()
    if code in BAD_NUMBER_CODES:
        return SendError(text, code=code, contact_bad=True)
    if code in ELSEWHERE_CODES:
        return SendError(text, code=code, retryable=True, other_provider=True)
    retryable = (
        status >= 500
        or status == 429
        or code in RETRYABLE_CODES
        or code.startswith(("isp.", "Throttling", "InvalidAccessKeyId", "SignatureDoesNotMatch"))
    )
    return SendError(text, code=code, retryable=retryable)


def number_key(raw: str) -> str:
    """One spelling of a number for matching receipts: '+8613800138000', '8613800138000'
    and '13800138000' all become '8613800138000'."""
    digits = "".join(ch for ch in raw if ch.isdigit())
    if digits.startswith("00"):
        digits = digits[2:]
    if len(digits) == 11 and digits.startswith("1"):
        digits = "86" + digits
    return digits


def api_number(e164: str) -> str:
    """How Aliyun wants a number: 11 digits for the mainland, country code + number else."""
    key = number_key(e164)
    return key[2:] if key.startswith("86") and len(key) == 13 else key


def read_json_list(body: bytes, what: str) -> list[dict[str, Any]]:
    """Aliyun pushes a JSON array of reports (a single object is taken too)."""
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise CallbackRejected(f"an Aliyun {what} push must be JSON") from None
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        raise CallbackRejected(f"an Aliyun {what} push must be a JSON array of objects")
    return items


def accepted() -> CallbackResponse:
    """The answer Aliyun expects once a push is taken (anything else makes it push again)."""
    return CallbackResponse(
        content_type="application/json; charset=utf-8",
        body=json.dumps({"code": 0, "msg": "接收成功"}, ensure_ascii=False, separators=(",", ":")),
    )
