"""A stateful fake of WeCom's app-message API (企业微信) that posts encrypted taps back.

`/cgi-bin/gettoken` hands out tokens; `expire_tokens()` makes every token given so far
answer 42001 (expired), as WeCom does after `expires_in`, and an unknown token answers
40014. `/cgi-bin/message/send` takes text and `template_card` messages: unknown userids
come back in `invaliduser` (81013 when nobody was valid), a task_id used before is
refused, and past 30 messages a minute or 1,000 an hour to one member the message is
accepted and silently dropped (`dropped`), measured on the test's clock.
`/cgi-bin/message/update_template_card` takes each `ResponseCode` once.

`tap()` posts a `template_card_event` to the app's callback URL, encrypted and signed by
wechatpy's implementation of WeCom's crypto (not ours), as WeCom does; `check_url()`
does the GET URL check with an `echostr`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import xmltodict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from wechatpy.enterprise.crypto import WeChatCrypto

TOKEN_EXPIRED, TOKEN_INVALID = 42001, 40014


@dataclass
class Tap:
    status: int
    answer: str


@dataclass
class FakeWeCom:
    now: Callable[[], datetime]
    corp_id: str = "wwfakecorp0001"
    corp_secret: str = "fake-corp-secret"
    agent_id: int = 1000002
    token: str = "fakeCallbackToken"
    encoding_aes_key: str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    callback_url: str = ""
    members: set[str] = field(default_factory=set)
    tokens: dict[str, bool] = field(default_factory=dict)  # token -> still valid
    gettoken_calls: int = 0
    delivered: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    card_updates: list[dict[str, Any]] = field(default_factory=list)
    task_ids: set[str] = field(default_factory=set)
    _response_codes: dict[str, str] = field(default_factory=dict)  # code -> task_id
    _sent_at: dict[str, list[datetime]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/cgi-bin/gettoken", self._gettoken, methods=["GET"]),
                Route("/cgi-bin/message/send", self._send, methods=["POST"]),
                Route("/cgi-bin/message/update_template_card", self._update_card, methods=["POST"]),
            ]
        )
        self.http = httpx.AsyncClient(timeout=10)
        self.crypto = WeChatCrypto(self.token, self.encoding_aes_key, self.corp_id)

    async def aclose(self) -> None:
        await self.http.aclose()

    def expire_tokens(self) -> None:
        self.tokens = dict.fromkeys(self.tokens, False)

    # --- the API ------------------------------------------------------------------------

    async def _gettoken(self, request: Request) -> JSONResponse:
        self.gettoken_calls += 1
        query = request.query_params
        if query.get("corpid") != self.corp_id:
            return JSONResponse({"errcode": 40013, "errmsg": "invalid corpid"})
        if query.get("corpsecret") != self.corp_secret:
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
        token = secrets.token_urlsafe(24)
        self.tokens[token] = True
        return JSONResponse(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
        )

    def _token_error(self, request: Request) -> JSONResponse | None:
        state = self.tokens.get(request.query_params.get("access_token", ""))
        if state is None:
            return JSONResponse({"errcode": TOKEN_INVALID, "errmsg": "invalid access_token"})
        if not state:
            return JSONResponse({"errcode": TOKEN_EXPIRED, "errmsg": "access_token expired"})
        return None

    def _over_limit(self, user: str) -> bool:
        now = self.now()
        times = [t for t in self._sent_at.get(user, []) if t > now - timedelta(hours=1)]
        last_minute = [t for t in times if t > now - timedelta(minutes=1)]
        self._sent_at[user] = [*times, now]
        return len(last_minute) >= 30 or len(times) >= 1000

    async def _send(self, request: Request) -> JSONResponse:
        if refusal := self._token_error(request):
            return refusal
        body = await request.json()
        if body.get("agentid") != self.agent_id:
            return JSONResponse({"errcode": 301002, "errmsg": "not allow operate another agent"})
        if body.get("msgtype") == "template_card":
            card = body.get("template_card", {})
            task_id = card.get("task_id", "")
            if not task_id or task_id in self.task_ids:
                return JSONResponse({"errcode": 40058, "errmsg": "task_id duplicated or empty"})
            if card.get("card_type") != "button_interaction" or not card.get("button_list"):
                return JSONResponse({"errcode": 40058, "errmsg": "invalid template_card"})
            self.task_ids.add(task_id)
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        valid = [u for u in users if u in self.members]
        invalid = [u for u in users if u not in self.members]
        if not valid:
            return JSONResponse(
                {
                    "errcode": 81013,
                    "errmsg": "user & party & tag all invalid",
                    "invaliduser": "|".join(invalid),
                }
            )
        for user in valid:
            record = {"to": user, **body}
            (self.dropped if self._over_limit(user) else self.delivered).append(record)
        return JSONResponse(
            {
                "errcode": 0,
                "errmsg": "ok",
                "invaliduser": "|".join(invalid),
                "msgid": secrets.token_hex(12),
                "response_code": secrets.token_hex(16),
            }
        )

    async def _update_card(self, request: Request) -> JSONResponse:
        if refusal := self._token_error(request):
            return refusal
        body = await request.json()
        code = body.get("response_code", "")
        if code not in self._response_codes:
            return JSONResponse({"errcode": 40035, "errmsg": "invalid response_code"})
        task_id = self._response_codes.pop(code)
        self.card_updates.append({"task_id": task_id, **body})
        return JSONResponse({"errcode": 0, "errmsg": "ok", "invaliduser": []})

    # --- callbacks, when the test says so -----------------------------------------------

    async def tap(self, user: str, task_id: str, key: str, *, tamper: bool = False) -> Tap:
        """`user` taps the button `key` on the card `task_id`."""
        code = secrets.token_hex(16)
        self._response_codes[code] = task_id
        event = xmltodict.unparse(
            {
                "xml": {
                    "ToUserName": self.corp_id,
                    "FromUserName": user,
                    "CreateTime": str(int(time.time())),
                    "MsgType": "event",
                    "Event": "template_card_event",
                    "EventKey": key,
                    "TaskId": task_id,
                    "CardType": "button_interaction",
                    "ResponseCode": code,
                    "AgentID": str(self.agent_id),
                }
            },
            full_document=False,
        )
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        packed = xmltodict.parse(self.crypto.encrypt_message(event, nonce, timestamp))["xml"]
        signature = packed["MsgSignature"]
        if tamper:
            signature = "0" * 40
        body = (
            f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
            f"<AgentID><![CDATA[{self.agent_id}]]></AgentID>"
            f"<Encrypt><![CDATA[{packed['Encrypt']}]]></Encrypt></xml>"
        )
        query = urlencode({"msg_signature": signature, "timestamp": timestamp, "nonce": nonce})
        separator = "&" if "?" in self.callback_url else "?"
        response = await self.http.post(
            f"{self.callback_url}{separator}{query}",
            content=body.encode(),
            headers={"Content-Type": "text/xml"},
        )
        return Tap(response.status_code, response.text)

    async def check_url(self, echo: str) -> Tap:
        """WeCom's URL check: a GET with an encrypted `echostr`."""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        packed = xmltodict.parse(self.crypto.encrypt_message(echo, nonce, timestamp))["xml"]
        query = urlencode(
            {
                "msg_signature": packed["MsgSignature"],
                "timestamp": timestamp,
                "nonce": nonce,
                "echostr": packed["Encrypt"],
            }
        )
        separator = "&" if "?" in self.callback_url else "?"
        response = await self.http.get(f"{self.callback_url}{separator}{query}")
        return Tap(response.status_code, response.text)
