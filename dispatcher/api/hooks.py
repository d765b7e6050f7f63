"""Inbound provider callbacks: `/hooks/sms/inbound` and `/hooks/{channel}/{provider}`.

When `[hooks] token` is set, every hook needs `?token=<it>`; providers verify their own
signatures on top of that, over the public URL (`app.public_base_url` + path + query),
since behind a proxy the URL this server sees is not the one the provider signed.
Providers whose callbacks carry no signature (Aliyun, Tencent) have a secret path token
(`callback_token`: `/hooks/{channel}/{provider}/{callback_token}`) and optionally a
source-IP allowlist (`callback_allow_ips`; behind a proxy, run the server so the
client address is the real one, e.g. uvicorn's `--proxy-headers`).
A receipt for a message whose send is not committed yet gets a 503, so the provider
posts it again (Twilio with the `#rc=` retry the callback URL asks for).

Inbound SMS replies come in bursts (everyone answering a red warning at once), and
FastAPI's work around a request (the middleware stack, matching every route, solving
dependencies) cost more CPU than recording the reply: `sms_inbound_asgi` takes a POST to
`SMS_INBOUND_PATH` straight to the same handler (`dispatcher.app` routes it there).
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from channels.base import CallbackRejected, CallbackRequest
from dispatcher.api.deps import RuntimeDep, body_too_large
from dispatcher.inbound import UnmatchedCallback, process_callback
from dispatcher.runtime import Runtime

router = APIRouter(prefix="/hooks", tags=["hooks"])
SMS_INBOUND_PATH = "/hooks/sms/inbound"
# Longer than any phone number or sender name (and than the inbox keeps).
MAX_SENDER = 32
# As many form fields as Starlette's form parser allows.
MAX_FIELDS = 1000


def public_url(request: Request, base_url: str) -> str:
    """The URL the provider posted to, as the outside world spells it."""
    url = base_url.rstrip("/") + request.url.path
    return f"{url}?{request.url.query}" if request.url.query else url


async def _request(request: Request, runtime: Runtime) -> CallbackRequest:
    body = await request.body()
    if too_large := body_too_large(runtime, body):
        raise CallbackRejected(too_large, 413)
    base_url = runtime.settings.app.public_base_url
    form: dict[str, str] = {}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        # What Starlette's parser makes of it (Latin-1 bytes, UTF-8 escapes), at a tenth
        # of the cost: every SMS reply of a burst comes this way.
        try:
            pairs = parse_qsl(
                body.decode("latin-1"), keep_blank_values=True, max_num_fields=MAX_FIELDS
            )
        except ValueError as exc:
            raise CallbackRejected(f"unreadable form: {exc}", 400) from exc
        form = dict(pairs)
    elif content_type.startswith("multipart/form-data"):
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    return CallbackRequest(
        url=public_url(request, base_url),
        method=request.method,
        headers=dict(request.headers),
        query=dict(request.query_params),
        form=form,
        body=body,
    )


def _refusal(
    request: Request, runtime: RuntimeDep, provider: str, path_token: str | None
) -> JSONResponse | None:
    """Why this request may not reach the provider, if it may not."""
    token = runtime.settings.hooks.token
    if token and not hmac.compare_digest(request.query_params.get("token", ""), token):
        return JSONResponse({"detail": "missing or wrong hook token"}, status_code=403)
    section = getattr(runtime.settings.providers, provider, None)
    expected = str(getattr(section, "callback_token", ""))
    if expected and not hmac.compare_digest(path_token or "", expected):
        return JSONResponse({"detail": "missing or wrong callback path token"}, status_code=403)
    if path_token is not None and not expected:
        return JSONResponse({"detail": f"{provider} takes no path token"}, status_code=404)
    allowed: list[str] = list(getattr(section, "callback_allow_ips", []))
    if allowed:
        host = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is None or not any(
            address in ipaddress.ip_network(net, strict=False) for net in allowed
        ):
            return JSONResponse(
                {"detail": f"callbacks from {host or 'an unknown address'} are not allowed"},
                status_code=403,
            )
    return None


async def _handle(
    request: Request,
    runtime: RuntimeDep,
    channel: str,
    provider: str,
    callback: CallbackRequest | None = None,
    path_token: str | None = None,
) -> Response:
    if refusal := _refusal(request, runtime, provider, path_token):
        return refusal
    try:
        callback = callback or await _request(request, runtime)
        answer = await process_callback(runtime, channel, provider, callback, raise_unmatched=True)
    except CallbackRejected as exc:
        return JSONResponse({"detail": exc.reason}, status_code=exc.status)
    except UnmatchedCallback as exc:
        return JSONResponse(
            {"detail": f"{exc}; try again"}, status_code=503, headers={"Retry-After": "1"}
        )
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


@router.post("/sms/inbound")
async def sms_inbound(request: Request, runtime: RuntimeDep) -> Response:
    """Inbound SMS replies (form fields `From`, `Body`, as Twilio posts them)."""
    return await _sms_inbound(request, runtime)


async def sms_inbound_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """`sms_inbound` as a plain ASGI app (`scope["app"]` is the app); an `HTTPException`
    (a malformed multipart body) answers as the app's handler would, JSON with `detail`."""
    request = Request(scope, receive)
    try:
        response = await _sms_inbound(request, scope["app"].state.runtime)
    except HTTPException as exc:
        response = JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
    await response(scope, receive, send)


async def _sms_inbound(request: Request, runtime: Runtime) -> Response:
    provider = runtime.providers.inbound_sms()
    if provider is None:
        return JSONResponse({"detail": "no SMS provider receives replies"}, status_code=404)
    try:
        callback = await _request(request, runtime)
    except CallbackRejected as exc:
        return JSONResponse({"detail": exc.reason}, status_code=exc.status)
    sender = callback.form.get("From")
    if not sender or callback.form.get("Body") is None:
        return JSONResponse({"detail": "form fields From and Body are required"}, status_code=400)
    if len(sender) > MAX_SENDER:
        detail = f"From is longer than {MAX_SENDER} characters: not a phone number"
        return JSONResponse({"detail": detail}, status_code=400)
    return await _handle(request, runtime, "sms", provider.name, callback)


@router.api_route("/{channel}/{provider}", methods=["GET", "POST"])
async def provider_hook(
    channel: str, provider: str, request: Request, runtime: RuntimeDep
) -> Response:
    """A provider's callback (GET for a URL check such as WeCom's `echostr`)."""
    return await _handle(request, runtime, channel, provider)


@router.api_route("/{channel}/{provider}/{path_token}", methods=["GET", "POST"])
async def provider_hook_with_token(
    channel: str, provider: str, path_token: str, request: Request, runtime: RuntimeDep
) -> Response:
    """A callback of a provider whose route is guarded by its `callback_token`."""
    return await _handle(request, runtime, channel, provider, path_token=path_token)
