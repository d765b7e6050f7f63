"""Every Redis key prefix Jiaoying writes, in one place (the arq queue has its own)."""

from __future__ import annotations

# Next free send slot per (channel, provider): a float timestamp. See ratelimit.py.
RATE_SLOT = "jiaoying:rate:{channel}:{provider}"
# Circuit-breaker state per (channel, provider): a hash. See circuit.py.
CIRCUIT = "jiaoying:circuit:{channel}:{provider}"
# Failed dashboard logins per username, expiring: see api/login.py.
LOGIN_FAILURES = "jiaoying:login-failures:{username}"

# Recent send times per (channel, provider, hashed recipient): a sorted set. See
# recipient_limits.py.
RECIPIENT_SENDS = "jiaoying:recipient:{channel}:{provider}:{recipient}"


def rate_slot_key(channel: str, provider: str) -> str:
    return RATE_SLOT.format(channel=channel, provider=provider)


def circuit_key(channel: str, provider: str) -> str:
    return CIRCUIT.format(channel=channel, provider=provider)


def recipient_sends_key(channel: str, provider: str, recipient: str) -> str:
    return RECIPIENT_SENDS.format(channel=channel, provider=provider, recipient=recipient)


def login_failures_key(username: str) -> str:
    return LOGIN_FAILURES.format(username=username)
