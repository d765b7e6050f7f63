"""WeCom (企业微信) application messages: a card with buttons out, the tap back.

Send: `POST /cgi-bin/message/send?access_token=` with a `template_card` of type
`button_interaction` (收到 / 求助 / 已部署, the answer link as the card's own action for
a phone that cannot show buttons). The access token comes from `/cgi-bin/gettoken`, is
cached until shortly before `expires_in`, and is fetched again once when WeCom calls it
invalid or expired (40014, 42001). A recipient WeCom does not know comes back in
`invaliduser` (or as 81013 when nobody was valid): that contact is bad. WeCom silently
drops messages past 30 a minute or 1,000 an hour to one member, so those limits are
declared for the core to keep.

Callback (`/hooks/wechat/wecom`, set in the app's "接收消息" settings with the same Token
and EncodingAESKey): the URL check is a GET with `echostr`, answered with its decrypted
value; a tap is an encrypted `template_card_event` with `TaskId` (our message id),
`EventKey` (the button), `FromUserName` and a single-use `ResponseCode`, with which
`confirm_answer` turns the buttons into "已确认" via `/cgi-bin/message/update_template_card`.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any
from xml.etree.ElementTree import Element

import httpx
from defusedxml import ElementTree

from channels.base import (
    CallbackRejected,
    CallbackReply,
    CallbackRequest,
    CallbackResponse,
    Channel,
    DirectReply,
    Event,
    Handshake,
    Message,
    PostedCallbacks,
    ProviderContext,
    ProviderFlags,
    SendError,
    SendResult,
)
from channels.wecom_crypto import CryptoError, WeComCrypto

TOKEN_ERRORS = {40014, 42001, 41001}
NOBODY_VALID = 81013
RETRYABLE_ERRORS = {-1, 45009, 45033, 40001, 40013, 60020}
# Renew the cached token this long before WeCom says it expires.
TOKEN_MARGIN_S = 300.0
BUTTONS = (("收到", 1, "received"), ("求助", 2, "help"), ("已部署", 3, "on_duty"))
_TASK_ID_UNSAFE = re.compile(r"[^0-9A-Za-z_\-@]")


class WeComProvider(PostedCallbacks):
    def __init__(self, settings: Mapping[str, Any], context: ProviderContext) -> None:
        self.name = "wecom"
        self.channel = Channel.WECHAT
        self._corp_id = str(settings.get("corp_id", ""))
        self._secret = str(settings.get("corp_secret", ""))
        self._agent_id = int(settings.get("agent_id", 0) or 0)
        self._base_url = str(settings.get("base_url", "https://qyapi.weixin.qq.com")).rstrip("/")
        if not self._corp_id or not self._secret or not self._agent_id:
            raise ValueError("[providers.wecom] needs corp_id, corp_secret and agent_id")
        self._crypto = WeComCrypto(
            str(settings.get("token", "")), str(settings.get("encoding_aes_key", "")), self._corp_id
        )
        limits = settings.get("recipient_limits") or ((30, 60), (1000, 3600))
        self.flags = ProviderFlags(
            receives_replies=True,
            recipient_limits=tuple((int(n), float(w)) for n, w in limits),
            confirms_answers=True,
        )
        self._context = context
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()

    # --- the API ------------------------------------------------------------------------

    async def _access_token(self, stale: str | None = None) -> str:
        async with self._token_lock:
            if self._token and self._token != stale and time.monotonic() < self._token_until:
                return self._token
            answer = await self._get_json(
                f"{self._base_url}/cgi-bin/gettoken",
                {"corpid": self._corp_id, "corpsecret": self._secret},
                "gettoken",
            )
            token = answer.get("access_token")
            if answer.get("errcode", 0) != 0 or not isinstance(token, str) or not token:
                code = answer.get("errcode")
                raise SendError(
                    f"wecom gettoken: {code} {answer.get('errmsg', '')}",
                    code=str(code),
                    retryable=True,
                )
            expires_in = float(answer.get("expires_in", 7200))
            self._token = token
            self._token_until = time.monotonic() + max(60.0, expires_in - TOKEN_MARGIN_S)
            return token

    async def _get_json(self, url: str, params: dict[str, str], what: str) -> dict[str, Any]:
        try:
            response = await self._context.http.get(url, params=params)
        except httpx.HTTPError as exc:
            raise SendError(f"wecom {what}: {type(exc).__name__}", retryable=True) from exc
        return _json(response, what)

    async def call(self, path: str, payload: dict[str, Any], what: str) -> dict[str, Any]:
        """POST to the API with the cached token, fetching a new one once if it went stale."""
        token = await self._access_token()
        for attempt in range(2):
            try:
                response = await self._context.http.post(
                    f"{self._base_url}{path}", params={"access_token": token}, json=payload
                )
            except httpx.HTTPError as exc:
                raise SendError(f"wecom {what}: {type(exc).__name__}", retryable=True) from exc
            answer = _json(response, what)
            if answer.get("errcode") in TOKEN_ERRORS and attempt == 0:
                token = await self._access_token(stale=token)
                continue
            return answer
        raise AssertionError("unreachable")

    # --- sending ------------------------------------------------------------------------

    def card(self, message: Message, task_id: str) -> dict[str, Any]:
        title, _, rest = message.text.partition("\n")
        card: dict[str, Any] = {
            "card_type": "button_interaction",
            "source": {"desc": "叫应预警"},
            "main_title": {"title": (message.title or title)[:36]},
            "sub_title_text": _clip(rest.strip() or message.text, 160),
            "task_id": task_id,
            "button_list": [{"text": t, "style": s, "key": k} for t, s, k in BUTTONS],
        }
        if message.answer_url:
            card["card_action"] = {"type": 1, "url": message.answer_url}
        return card

    def payload(self, message: Message, task_id: str) -> dict[str, Any]:
        base: dict[str, Any] = {"touser": message.to, "agentid": self._agent_id}
        if not message.expects_answer:
            return {**base, "msgtype": "text", "text": {"content": message.text[:2000]}}
        return {**base, "msgtype": "template_card", "template_card": self.card(message, task_id)}

    async def send(self, message: Message) -> SendResult:
        # WeCom refuses a task_id it has seen before, forever: make each one unique.
        reference = _TASK_ID_UNSAFE.sub("-", message.reference)
        task_id = f"jy-{reference}-{secrets.token_hex(6)}"
        answer = await self.call("/cgi-bin/message/send", self.payload(message, task_id), "send")
        code = answer.get("errcode")
        text = f"wecom send: {code} {answer.get('errmsg', '')}"
        invalid = str(answer.get("invaliduser") or "").split("|")
        if code == NOBODY_VALID or (code == 0 and message.to in invalid):
            raise SendError(text + " (invaliduser)", code="invaliduser", contact_bad=True)
        if code != 0:
            raise SendError(text, code=str(code), retryable=code in RETRYABLE_ERRORS | TOKEN_ERRORS)
        return SendResult(provider_message_id=task_id)

    async def confirm_answer(self, reply: DirectReply, label: str) -> None:
        if not reply.receipt:
            return
        payload: dict[str, Any] = {
            "agentid": self._agent_id,
            "response_code": reply.receipt,
            "button": {"replace_name": label},
        }
        if reply.sender:
            payload["userids"] = [reply.sender]
        answer = await self.call("/cgi-bin/message/update_template_card", payload, "update card")
        if answer.get("errcode") != 0:
            code = answer.get("errcode")
            raise SendError(f"wecom update card: {code} {answer.get('errmsg', '')}", code=str(code))

    # --- callbacks ----------------------------------------------------------------------

    def parse_callback(self, request: CallbackRequest) -> list[Event]:
        query = request.query
        sig, timestamp, nonce = (query.get(k, "") for k in ("msg_signature", "timestamp", "nonce"))
        if not sig or not timestamp or not nonce:
            raise CallbackRejected("msg_signature, timestamp and nonce are required", 403)
        if request.method == "GET":
            echo = query.get("echostr", "")
            if not echo:
                raise CallbackRejected("a WeCom URL check needs echostr")
            return [Handshake(self._open(sig, timestamp, nonce, echo))]
        outer = _xml(request.body, "the callback body")
        encrypted = outer.findtext("Encrypt") or ""
        if not encrypted:
            raise CallbackRejected("the callback has no Encrypt element")
        inner = _xml(self._open(sig, timestamp, nonce, encrypted).encode(), "the message")
        if inner.findtext("MsgType") != "event" or inner.findtext("Event") != "template_card_event":
            return []  # entering the app, other events: nothing to record
        task_id, key = inner.findtext("TaskId") or "", inner.findtext("EventKey") or ""
        if not task_id or not key:
            raise CallbackRejected("a template_card_event needs TaskId and EventKey")
        return [
            DirectReply(
                task_id,
                key,
                kind="button",
                sender=inner.findtext("FromUserName") or None,
                receipt=inner.findtext("ResponseCode") or None,
            )
        ]

    def _open(self, sig: str, timestamp: str, nonce: str, encrypted: str) -> str:
        try:
            self._crypto.verify(sig, timestamp, nonce, encrypted)
            return self._crypto.decrypt(encrypted)
        except CryptoError as exc:
            raise CallbackRejected(f"WeCom callback: {exc}", 403) from None

    def callback_response(self, reply: CallbackReply | None = None) -> CallbackResponse:
        # An empty answer tells WeCom the event was taken (no passive reply).
        return CallbackResponse(body="")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise SendError(
            f"wecom {what}: HTTP {response.status_code}, not JSON",
            code=str(response.status_code),
            retryable=True,
        )
    return answer


def _xml(body: bytes, what: str) -> Element:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise CallbackRejected(f"{what} is not XML") from None
    except Exception as exc:  # defusedxml refuses entities and DTDs
        raise CallbackRejected(f"{what} is not acceptable XML: {type(exc).__name__}") from None
    return root  # type: ignore[no-any-return]
