"""A fake speaker platform (应急广播 adapter / vendor cloud) with the JSON HTTP API.

`POST /v1/broadcasts` with `Authorization: Bearer <key>` takes a play command and answers
`{"result": "ok", "frameId", "taskId"}`, or a refusal (`DEVICE_NOT_FOUND` 404, `BUSY`,
a bad request 400, 500 when told to fail). Nothing plays until the test calls
`report_all()`: each accepted task's device then does what `fates` says ("ok", a reason
for failing, or "silent": never reports), and the report is POSTed, signed, to the
command's `callbackUrl`.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from channels.speaker_http import sign_report


@dataclass
class FakeSpeakerPlatform:
    api_key: str = "speaker-key"
    callback_secret: str = "speaker-callback-secret"
    # deviceId -> "ok" | "silent" | a failure reason; unknown devices are refused.
    fates: dict[str, str] = field(default_factory=dict)
    failing: bool = False
    commands: list[dict[str, Any]] = field(default_factory=list)
    reports: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    _pending: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[Route("/v1/broadcasts", self._play, methods=["POST"])])
        self.http = httpx.AsyncClient(timeout=10)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _play(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"result": "unauthorized", "code": "AUTH"}, 401)
        if self.failing:
            return JSONResponse({"result": "internal error", "code": "INTERNAL"}, 500)
        try:
            command = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"result": "body is not JSON", "code": "BAD_REQUEST"}, 400)
        problems = [
            name
            for name, ok in (
                ("frameId", isinstance(command.get("frameId"), str)),
                ("deviceId", isinstance(command.get("deviceId"), str)),
                ("method", command.get("method") in ("startTts", "playUrl")),
                ("content", bool(command.get("content"))),
                ("vol", isinstance(command.get("vol"), int) and 0 <= command["vol"] <= 100),
                ("repeat", isinstance(command.get("repeat"), int) and 1 <= command["repeat"] <= 10),
                ("callbackUrl", str(command.get("callbackUrl", "")).startswith("http")),
            )
            if not ok
        ]
        if problems:
            return JSONResponse({"result": f"bad {problems}", "code": "BAD_REQUEST"}, 400)
        self.commands.append(command)
        fate = self.fates.get(command["deviceId"])
        if fate is None:
            return JSONResponse({"result": "device not found", "code": "DEVICE_NOT_FOUND"}, 404)
        if fate == "busy":
            return JSONResponse({"result": "device busy", "code": "BUSY"}, 200)
        task = {**command, "taskId": "T" + secrets.token_hex(8)}
        self._pending.append(task)
        return JSONResponse(
            {"result": "ok", "frameId": command["frameId"], "taskId": task["taskId"]}
        )

    async def report_all(self) -> None:
        """Every accepted task plays (or not) and is reported back."""
        pending, self._pending = self._pending, []
        for task in pending:
            fate = self.fates[task["deviceId"]]
            if fate == "silent":
                continue
            report = {
                "frameId": task["frameId"],
                "taskId": task["taskId"],
                "deviceId": task["deviceId"],
                "result": fate,
            }
            status = await self.post_report(task["callbackUrl"], report)
            self.reports.append((report, status))

    async def post_report(self, url: str, report: dict[str, Any], secret: str | None = None) -> int:
        body = json.dumps(report, ensure_ascii=False).encode()
        timestamp = str(int(time.time()))
        signature = sign_report(secret or self.callback_secret, timestamp, body)
        headers = {
            "Content-Type": "application/json",
            "X-Speaker-Timestamp": timestamp,
            "X-Speaker-Signature": signature,
        }
        response = await self.http.post(url, content=body, headers=headers)
        return response.status_code
