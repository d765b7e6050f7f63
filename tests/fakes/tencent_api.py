"""A stateful fake of Tencent Cloud SMS (2021-01-11 `SendSms`) that calls back.

A JSON POST to "/" with `X-TC-Action: SendSms`, signed with TC3-HMAC-SHA256: the fake
rebuilds the canonical request from the headers the request says it signed (as
Tencent's documentation spells it) and derives the key with the official SDK's
`Sign.sign_tc3`. Answers are Tencent's: HTTP 200 always, `Response.Error` for a refused
request (`AuthFailure.SignatureFailure`...), else one `SendStatusSet` entry per number
with its own `Code` ("Ok", `InvalidParameterValue.IncorrectPhoneNumber` for
`invalid_numbers`, `LimitExceeded.PhoneNumberThirtySecondLimit` for `limited_numbers`).
A request takes 1 to 200 numbers (`MissingParameter.EmptyPhoneNumberSet`,
`LimitExceeded.PhoneNumberCountLimit` else), mainland or international but not both
(`FailedOperation.ContainDomesticAndInternationalPhoneNumber`), and one text
(`TemplateParamSet`) for all of them; `sent` keeps how many numbers each request had.

`progress()` posts a receipt array for every text sent; `reply()` posts a reply.
`requests` keeps each request's headers and body (the SDK comparison reads them).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tencentcloud.common.sign import Sign


def verify_tc3(headers: dict[str, str], body: bytes, secret_id: str, secret_key: str) -> str:
    """'' if the request is signed right, else what is wrong."""
    authorization = headers.get("authorization", "")
    algorithm, _, rest = authorization.partition(" ")
    parts = dict(p.strip().split("=", 1) for p in rest.split(",") if "=" in p)
    credential = parts.get("Credential", "").split("/")
    if algorithm != "TC3-HMAC-SHA256" or len(credential) != 4 or credential[0] != secret_id:
        return "bad algorithm or SecretId"
    timestamp = headers.get("x-tc-timestamp", "")
    date = datetime.fromtimestamp(int(timestamp or 0), UTC).strftime("%Y-%m-%d")
    if credential[1] != date or credential[3] != "tc3_request":
        return "the credential scope does not match the timestamp"
    names = parts.get("SignedHeaders", "").split(";")
    if not {"content-type", "host"} <= set(names):
        return "content-type and host must be signed"
    canonical_headers = "".join(f"{n}:{headers.get(n, '').strip().lower()}\n" for n in names)
    canonical = (
        f"POST\n/\n\n{canonical_headers}\n{';'.join(names)}\n{hashlib.sha256(body).hexdigest()}"
    )
    to_sign = (
        f"TC3-HMAC-SHA256\n{timestamp}\n{date}/{credential[2]}/tc3_request\n"
        f"{hashlib.sha256(canonical.encode()).hexdigest()}"
    )
    if Sign.sign_tc3(secret_key, date, credential[2], to_sign) != parts.get("Signature"):
        return "The provided credentials could not be validated."
    return ""


@dataclass
class Posted:
    url: str
    body: Any
    status: int
    answer: str


@dataclass
class FakeTencent:
    secret_id: str = "AKID-fake"
    secret_key: str = "fake-tencent-key"
    sdk_app_id: str = "1400000001"
    template_id: str = "100001"
    sign_name: str = "叫应平台"
    callback_url: str = ""
    invalid_numbers: set[str] = field(default_factory=set)
    limited_numbers: set[str] = field(default_factory=set)
    # (report_status, errmsg) per E.164 number; default SUCCESS.
    fate: dict[str, tuple[str, str]] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    posted: list[Posted] = field(default_factory=list)
    _pending: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[Route("/", self._api, methods=["POST"])])
        self.http = httpx.AsyncClient(timeout=10)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _api(self, request: Request) -> JSONResponse:
        request_id = secrets.token_hex(16)
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append((headers, body))

        def error(code: str, message: str) -> JSONResponse:
            return JSONResponse(
                {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id}}
            )

        if problem := verify_tc3(headers, body, self.secret_id, self.secret_key):
            return error("AuthFailure.SignatureFailure", problem)
        if headers.get("x-tc-action") != "SendSms" or headers.get("x-tc-version") != "2021-01-11":
            return error("InvalidAction", "only SendSms 2021-01-11 is faked")
        try:
            payload = json.loads(body)
        except ValueError:
            return error("InvalidParameter", "the body is not JSON")
        if payload.get("SmsSdkAppId") != self.sdk_app_id:
            return error("FailedOperation.SmsSdkAppIdVerifyFail", "SmsSdkAppId")
        if payload.get("TemplateId") != self.template_id:
            return error("FailedOperation.TemplateIncorrectOrUnapproved", "TemplateId")
        numbers = payload.get("PhoneNumberSet") or []
        if not numbers:
            return error("MissingParameter.EmptyPhoneNumberSet", "PhoneNumberSet is empty")
        if len(numbers) > 200:
            return error("LimitExceeded.PhoneNumberCountLimit", "单次提交的手机号个数超过200个")
        if len({str(n).startswith("+86") for n in numbers}) > 1:
            return error(
                "FailedOperation.ContainDomesticAndInternationalPhoneNumber",
                "群发请求里既有国内手机号也有国际手机号",
            )
        self.sent.append(len(numbers))
        results = [self._one(number, payload) for number in numbers]
        return JSONResponse({"Response": {"SendStatusSet": results, "RequestId": request_id}})

    def _one(self, number: str, payload: dict[str, Any]) -> dict[str, Any]:
        result = {
            "SerialNo": "",
            "PhoneNumber": number,
            "Fee": 0,
            "SessionContext": payload.get("SessionContext", ""),
            "IsoCode": "CN",
        }
        if number in self.invalid_numbers:
            return {**result, "Code": "InvalidParameterValue.IncorrectPhoneNumber", "Message": "x"}
        if number in self.limited_numbers:
            code = "LimitExceeded.PhoneNumberThirtySecondLimit"
            return {**result, "Code": code, "Message": "30秒内同一号码限1条"}
        serial = f"2640:{secrets.randbelow(10**18)}"
        message = {"number": number, "params": payload.get("TemplateParamSet"), "sid": serial}
        self.messages.append(message)
        self._pending.append(message)
        return {**result, "SerialNo": serial, "Fee": 1, "Code": "Ok", "Message": "send success"}

    async def progress(self) -> None:
        pending, self._pending = self._pending, []
        for message in pending:
            status, errmsg = self.fate.get(message["number"], ("SUCCESS", "DELIVRD"))
            number = message["number"]
            report = {
                "user_receive_time": "2026-07-01 08:00:05",
                "nationcode": "86",
                "mobile": number[3:] if number.startswith("+86") else number,
                "report_status": status,
                "errmsg": errmsg,
                "description": "用户短信送达成功" if status == "SUCCESS" else "失败",
                "sid": message["sid"],
            }
            await self.post([report])

    async def reply(self, mobile: str, text: str) -> Posted:
        return await self.post(
            {
                "extend": "",
                "mobile": mobile,
                "nationcode": "86",
                "sign": self.sign_name,
                "text": text,
                "time": 1782950400,
            }
        )

    async def post(self, body: Any) -> Posted:
        response = await self.http.post(self.callback_url, json=body)
        posted = Posted(self.callback_url, body, response.status_code, response.text)
        self.posted.append(posted)
        return posted
