"""A stateful fake of Aliyun's SMS (dysmsapi) and voice (dyvmsapi) RPC APIs.

One app answers both: a POST to "/" with the action in `x-acs-action` and the parameters
in the query. Every request's ACS3-HMAC-SHA256 signature is recomputed with the official
SDK's own code (`alibabacloud_openapi_util`), so a provider request that passes here
passes Aliyun's check. Answers are what Aliyun answers: HTTP 200 `{"Code": "OK", ...}`,
HTTP 200 with a business `Code` (`isv.MOBILE_NUMBER_ILLEGAL` for `illegal_numbers`,
`isv.BUSINESS_LIMIT_CONTROL` for `limited_numbers`), HTTP 400 `SignatureDoesNotMatch`.

Texts go out by `SendSms` (`PhoneNumbers`, up to 1,000 comma-separated, one
`TemplateParam`) or `SendBatchSms` (JSON arrays `PhoneNumberJson`, `SignNameJson`,
`TemplateParamJson` in step, up to 100). Either answers one `Code` and one `BizId` for
the whole request: more numbers than that is `isv.MOBILE_COUNT_OVER_LIMIT`, and one
illegal or flow-controlled number refuses the whole request with its code. `actions`
keeps the action of every request that passed the signature check, `sent` each accepted
text request (action and how many numbers), `messages` each text.

Nothing happens on its own: `progress()` pushes an `SmsReport` for each text and a
`VoiceReport` for each call to the configured URLs, in Aliyun's JSON-array format;
`reply()` pushes an `SmsUp`. `posted` keeps every push and the answer it got.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from alibabacloud_openapi_util.client import Client as SdkUtil
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from Tea.request import TeaRequest


def sdk_authorization(
    method: str, query: dict[str, str], headers: dict[str, str], key_id: str, secret: str
) -> str:
    """The Authorization the official SDK computes for this request."""
    request = TeaRequest()
    request.method, request.pathname = method, "/"
    request.query, request.headers = dict(query), dict(headers)
    payload = headers["x-acs-content-sha256"]
    return str(SdkUtil.get_authorization(request, "ACS3-HMAC-SHA256", payload, key_id, secret))


@dataclass
class Posted:
    url: str
    body: Any
    status: int
    answer: str


@dataclass
class FakeAliyun:
    access_key_id: str = "LTAI-fake-id"
    access_key_secret: str = "fake-secret"
    sign_name: str = "叫应平台"
    template_code: str = "SMS_100001"
    tts_code: str = "TTS_200001"
    # Where pushes go (the console's HTTP push settings).
    sms_report_url: str = ""
    sms_up_url: str = ""
    voice_report_url: str = ""
    illegal_numbers: set[str] = field(default_factory=set)
    limited_numbers: set[str] = field(default_factory=set)
    # (success, err_code) per 11-digit number; default delivered.
    sms_fate: dict[str, tuple[bool, str]] = field(default_factory=dict)
    # (status_code, dtmf) per number; default heard through, no key.
    call_fate: dict[str, tuple[str, str]] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    sent: list[tuple[str, int]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    posted: list[Posted] = field(default_factory=list)
    _pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[Route("/", self._rpc, methods=["POST"])])
        self.http = httpx.AsyncClient(timeout=10)

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- the RPC API --------------------------------------------------------------------

    async def _rpc(self, request: Request) -> JSONResponse:
        request_id = secrets.token_hex(8).upper()
        body = await request.body()
        query = dict(parse_qsl(request.url.query, keep_blank_values=True))
        if problem := self._signature_problem(request, query, body):
            return JSONResponse(
                {"RequestId": request_id, "Code": "SignatureDoesNotMatch", "Message": problem},
                status_code=400,
            )
        action = request.headers.get("x-acs-action", "")
        self.actions.append(action)
        if action == "SendSms":
            return self._send_sms(query, request_id)
        if action == "SendBatchSms":
            return self._send_batch_sms(query, request_id)
        if action == "SingleCallByTts":
            return self._call(query, request_id)
        return JSONResponse(
            {"RequestId": request_id, "Code": "InvalidAction.NotFound", "Message": action}, 404
        )

    def _signature_problem(self, request: Request, query: dict[str, str], body: bytes) -> str:
        authorization = request.headers.get("authorization", "")
        algorithm, _, rest = authorization.partition(" ")
        parts = dict(p.split("=", 1) for p in rest.split(",") if "=" in p)
        if algorithm != "ACS3-HMAC-SHA256" or parts.get("Credential") != self.access_key_id:
            return "unknown algorithm or AccessKeyId"
        signed = parts.get("SignedHeaders", "").split(";")
        if not {"host", "x-acs-action", "x-acs-version", "x-acs-date"} <= set(signed):
            return "required headers are not signed"
        if request.headers.get("x-acs-content-sha256") != hashlib.sha256(body).hexdigest():
            return "x-acs-content-sha256 does not match the body"
        headers = {name: request.headers.get(name, "") for name in signed}
        expected = sdk_authorization(
            "POST", query, headers, self.access_key_id, self.access_key_secret
        )
        if expected != authorization:
            return "Specified signature is not matched with our calculation."
        return ""

    @staticmethod
    def _refuse(request_id: str, code: str, message: str) -> JSONResponse:
        return JSONResponse({"RequestId": request_id, "Code": code, "Message": message})

    def _business(self, number: str, request_id: str) -> JSONResponse | None:
        if number in self.illegal_numbers or not number.isdigit():
            self.refused.append({"number": number, "code": "isv.MOBILE_NUMBER_ILLEGAL"})
            return self._refuse(request_id, "isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if number in self.limited_numbers:
            self.refused.append({"number": number, "code": "isv.BUSINESS_LIMIT_CONTROL"})
            return self._refuse(
                request_id, "isv.BUSINESS_LIMIT_CONTROL", "触发号码分钟级流控Permits:1"
            )
        return None

    def _texts(
        self,
        request_id: str,
        numbers: list[str],
        params: list[Any],
        out_id: str | None,
        action: str,
        limit: int,
    ) -> JSONResponse:
        """Take the texts of one request, or refuse it whole as Aliyun does."""
        if not numbers or len(numbers) > limit:
            return self._refuse(request_id, "isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制")
        if not all(isinstance(p, dict) for p in params):
            return self._refuse(request_id, "isv.INVALID_JSON_PARAM", "JSON参数不合法")
        for number in numbers:
            if refusal := self._business(number, request_id):
                return refusal
        biz_id = f"{secrets.randbelow(10**18)}^0"
        for number, param in zip(numbers, params, strict=True):
            message = {"number": number, "params": param, "biz_id": biz_id, "out_id": out_id}
            self.messages.append(message)
            self._pending.append(("sms", message))
        self.sent.append((action, len(numbers)))
        return JSONResponse(
            {"RequestId": request_id, "Code": "OK", "Message": "OK", "BizId": biz_id}
        )

    def _template_refusal(self, query: dict[str, str], request_id: str) -> JSONResponse | None:
        if query.get("TemplateCode") != self.template_code:
            return self._refuse(request_id, "isv.SMS_TEMPLATE_ILLEGAL", "模板不合法")
        return None

    def _send_sms(self, query: dict[str, str], request_id: str) -> JSONResponse:
        if refusal := self._template_refusal(query, request_id):
            return refusal
        if query.get("SignName") != self.sign_name:
            return self._refuse(request_id, "isv.SMS_SIGNATURE_ILLEGAL", "签名不合法")
        try:
            params = json.loads(query.get("TemplateParam", ""))
        except ValueError:
            return self._refuse(request_id, "isv.INVALID_JSON_PARAM", "JSON参数不合法")
        numbers = query.get("PhoneNumbers", "").split(",")
        return self._texts(
            request_id, numbers, [params] * len(numbers), query.get("OutId"), "SendSms", 1000
        )

    def _send_batch_sms(self, query: dict[str, str], request_id: str) -> JSONResponse:
        if refusal := self._template_refusal(query, request_id):
            return refusal
        try:
            numbers = json.loads(query.get("PhoneNumberJson", ""))
            signs = json.loads(query.get("SignNameJson", ""))
            params = json.loads(query.get("TemplateParamJson", ""))
        except ValueError:
            return self._refuse(request_id, "isv.INVALID_JSON_PARAM", "JSON参数不合法")
        if not all(isinstance(v, list) for v in (numbers, signs, params)):
            return self._refuse(request_id, "isv.INVALID_JSON_PARAM", "JSON参数不合法")
        if not len(numbers) == len(signs) == len(params):
            return self._refuse(request_id, "isv.INVALID_PARAMETERS", "号码、签名与变量个数不一致")
        if any(sign != self.sign_name for sign in signs):
            return self._refuse(request_id, "isv.SMS_SIGNATURE_ILLEGAL", "签名不合法")
        numbers = [str(n) for n in numbers]
        return self._texts(request_id, numbers, params, query.get("OutId"), "SendBatchSms", 100)

    def _call(self, query: dict[str, str], request_id: str) -> JSONResponse:
        if query.get("TtsCode") != self.tts_code:
            return JSONResponse(
                {
                    "RequestId": request_id,
                    "Code": "isv.TTS_TEMPLATE_ILLEGAL",
                    "Message": "模板不合法",
                }
            )
        number = query.get("CalledNumber", "")
        if refusal := self._business(number, request_id):
            return refusal
        call_id = f"{secrets.randbelow(10**12)}^{secrets.randbelow(10**12)}"
        call = {
            "number": number,
            "params": json.loads(query.get("TtsParam", "{}")),
            "play_times": query.get("PlayTimes"),
            "call_id": call_id,
            "out_id": query.get("OutId"),
        }
        self.calls.append(call)
        self._pending.append(("voice", call))
        return JSONResponse(
            {"RequestId": request_id, "Code": "OK", "Message": "OK", "CallId": call_id}
        )

    # --- pushes, when the test says so --------------------------------------------------

    async def progress(self) -> None:
        pending, self._pending = self._pending, []
        for kind, item in pending:
            if kind == "sms":
                success, code = self.sms_fate.get(item["number"], (True, "DELIVERED"))
                report = {
                    "phone_number": item["number"],
                    "send_time": "2026-07-01 08:00:00",
                    "report_time": "2026-07-01 08:00:05",
                    "success": success,
                    "err_code": code,
                    "err_msg": "用户接收成功" if success else "失败",
                    "sms_size": "1",
                    "biz_id": item["biz_id"],
                    "out_id": item["out_id"],
                }
                await self.push(self.sms_report_url, [report])
            else:
                status, dtmf = self.call_fate.get(item["number"], ("200000", ""))
                report = {
                    "status_code": status,
                    "status_msg": "用户听完挂断" if status == "200000" else "",
                    "call_id": item["call_id"],
                    "start_time": "2026-07-01 08:00:00",
                    "end_time": "2026-07-01 08:00:40",
                    "duration": "40",
                    "out_id": item["out_id"],
                    "dtmf": dtmf,
                    "callee": item["number"],
                    "toll_type": "LOCAL",
                }
                await self.push(self.voice_report_url, [report])

    async def reply(self, number: str, content: str) -> Posted:
        """Someone answers one of our texts (an `SmsUp` push)."""
        item = {
            "phone_number": number,
            "send_time": "2026-07-01 08:01:00",
            "content": content,
            "sign_name": self.sign_name,
            "dest_code": "1234",
            "sequence_id": secrets.randbelow(10**9),
        }
        return await self.push(self.sms_up_url, [item])

    async def push(self, url: str, body: Any) -> Posted:
        response = await self.http.post(url, json=body)
        posted = Posted(url, body, response.status_code, response.text)
        self.posted.append(posted)
        return posted
