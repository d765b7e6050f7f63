"""A speaker platform with a JSON HTTP API (应急广播 adapter / 村村响 vendor platform).

Send: `POST {base_url}/v1/broadcasts` with a bearer key and
`{frameId, deviceId, method: "startTts", content, title, vol, repeat, callbackUrl}`;
the platform answers `{"result": "ok", "taskId": ...}` (accepted, not yet played) or a
refusal `{"result": <reason>, "code": ...}`. Later it POSTs the playback report to
`callbackUrl`: `{frameId, taskId, deviceId, result: "ok" | <reason>}`, signed with
`X-Speaker-Timestamp` and `X-Speaker-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<body>" with the callback secret>`. README "Speakers" has the exact payloads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import httpx

from channels.base import (
    CallbackRejected,
    CallbackReply,
    CallbackRequest,
    CallbackResponse,
    Channel,
    Event,
    Message,
    PlaybackReport,
    PostedCallbacks,
    ProviderContext,
    ProviderFlags,
    SendError,
    SendResult,
)

# Refusals worth trying again (the device is playing something else, the platform is busy).
RETRYABLE_CODES = {"BUSY", "RATE_LIMITED", "PLATFORM_BUSY"}


def sign_report(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class HttpSpeakerProvider(PostedCallbacks):
    def __init__(self, settings: Mapping[str, Any], context: ProviderContext) -> None:
        self.name = "speaker_http"
        self.channel = Channel.SPEAKER
        self.flags = ProviderFlags(reports_playback=True)
        self._base_url = str(settings.get("base_url", "")).rstrip("/")
        self._api_key = str(settings.get("api_key", ""))
        self._secret = str(settings.get("callback_secret", ""))
        self._volume = int(settings.get("volume", 80))
        self._context = context

    def command(self, message: Message) -> dict[str, Any]:
        return {
            "frameId": message.reference,
            "deviceId": message.to,
            "method": "startTts",
            "content": message.text,
            "title": message.title,
            "vol": self._volume,
            "repeat": message.repeat,
            "callbackUrl": self._context.callback_url,
        }

    async def send(self, message: Message) -> SendResult:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            response = await self._context.http.post(
                f"{self._base_url}/v1/broadcasts", json=self.command(message), headers=headers
            )
        except httpx.HTTPError as exc:
            raise SendError(f"speaker platform: {type(exc).__name__}", retryable=True) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        result = str(answer.get("result", "")) if isinstance(answer, dict) else ""
        code = str(answer.get("code", response.status_code)) if isinstance(answer, dict) else ""
        if response.is_success and result == "ok":
            return SendResult(str(answer.get("taskId") or message.reference))
        reason = f"speaker platform {response.status_code}: {result or response.text[:200]}"
        retryable = (
            response.status_code >= 500
            or response.status_code in (401, 403, 429)
            or code in RETRYABLE_CODES
        )
        raise SendError(reason, code=code, retryable=retryable)

    def parse_callback(self, request: CallbackRequest) -> list[Event]:
        if self._secret:
            headers = {k.lower(): v for k, v in request.headers.items()}
            timestamp = headers.get("x-speaker-timestamp", "")
            signature = headers.get("x-speaker-signature", "")
            if not timestamp or not signature:
                raise CallbackRejected("missing X-Speaker-Timestamp or X-Speaker-Signature", 403)
            expected = sign_report(self._secret, timestamp, request.body)
            if not hmac.compare_digest(expected, signature):
                raise CallbackRejected("X-Speaker-Signature does not match", 403)
        return [parse_report(request.body)]

    def callback_response(self, reply: CallbackReply | None = None) -> CallbackResponse:
        return CallbackResponse(content_type="application/json", body='{"result":"ok"}')


def parse_report(body: bytes) -> PlaybackReport:
    """`{frameId, taskId?, result}` -> a playback report (shared with the MQTT provider)."""
    try:
        report = json.loads(body or b"null")
    except ValueError:
        raise CallbackRejected("a playback report must be JSON") from None
    if not isinstance(report, dict):
        raise CallbackRejected("a playback report must be a JSON object")
    reference = report.get("taskId") or report.get("frameId")
    result = report.get("result")
    if not isinstance(reference, str) or not reference or not isinstance(result, str):
        raise CallbackRejected("a playback report needs frameId (or taskId) and result")
    played = result == "ok"
    return PlaybackReport(reference, played=played, error_message=None if played else result)
