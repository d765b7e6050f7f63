"""Signatures: the webhook's HMAC check and the signed tokens in answer and task links.

Webhook: `X-Jiaoying-Signature: sha256=<hex HMAC-SHA256("<timestamp>.<raw body>")>` with
the sender's secret, and `X-Jiaoying-Timestamp` (Unix seconds) within the replay window.
Links: `/a/<id>-<sig>` and `/t/<id>-<sig>`, where sig is a short HMAC of the kind and id
under the app secret; short because every character of an SMS costs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from dispatcher.config import SenderSettings

SIGNATURE_HEADER = "X-Jiaoying-Signature"
TIMESTAMP_HEADER = "X-Jiaoying-Timestamp"


class SignatureRejected(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def sign_body(secret: str, timestamp: str, body: bytes) -> str:
    """The header value a sender puts in X-Jiaoying-Signature."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True)
class VerifiedSender:
    name: str
    cap_senders: tuple[str, ...]
    settings: SenderSettings


def verify_webhook(
    *,
    senders: list[SenderSettings],
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: datetime,
) -> VerifiedSender:
    """Find the configured sender whose secret signed this body, or refuse."""
    if not timestamp:
        raise SignatureRejected(f"missing {TIMESTAMP_HEADER} header")
    if not signature:
        raise SignatureRejected(f"missing {SIGNATURE_HEADER} header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureRejected(f"{TIMESTAMP_HEADER} must be Unix seconds") from None
    if not signature.startswith("sha256="):
        raise SignatureRejected(f"{SIGNATURE_HEADER} must look like sha256=<hex>")
    matched = None
    for sender in senders:
        if sender.secret and hmac.compare_digest(
            sign_body(sender.secret, timestamp, body), signature
        ):
            matched = sender
            break
    if matched is None:
        raise SignatureRejected("signature does not match any configured sender")
    skew = abs(now.timestamp() - sent_at)
    if skew > matched.replay_window_s:
        raise SignatureRejected(
            f"stale timestamp: {int(skew)} s from server time, "
            f"window is {matched.replay_window_s} s"
        )
    return VerifiedSender(
        name=matched.name, cap_senders=tuple(matched.cap_senders), settings=matched
    )


def _link_signature(secret: str, kind: str, item_id: int) -> str:
    mac = hmac.new(secret.encode(), f"{kind}:{item_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:9]).decode()


def make_link_token(secret: str, kind: str, item_id: int) -> str:
    return f"{item_id}-{_link_signature(secret, kind, item_id)}"


def read_link_token(secret: str, kind: str, token: str) -> int | None:
    """The id inside a valid token of this kind, or None."""
    head, _, sig = token.partition("-")
    if not head.isdigit() or not sig:
        return None
    item_id = int(head)
    if hmac.compare_digest(_link_signature(secret, kind, item_id), sig):
        return item_id
    return None
