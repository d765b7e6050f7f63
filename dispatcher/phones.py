"""Phone numbers: normalised to E.164 on the way in, masked on the way out."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-().]")
_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class InvalidPhone(ValueError):
    pass


def normalize_phone(raw: str) -> str:
    """'138 0013 8000', '+86-13800138000', '008613800138000' -> '+8613800138000'."""
    text = _SEPARATORS.sub("", raw.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    if _CN_MOBILE.match(text):
        return "+86" + text
    if text.startswith("86") and _CN_MOBILE.match(text[2:]):
        return "+" + text
    if _E164.match(text):
        return text
    raise InvalidPhone(f"not a phone number: {raw!r}")


def try_normalize_phone(raw: str) -> str | None:
    try:
        return normalize_phone(raw)
    except InvalidPhone:
        return None


def mask_phone(phone: str) -> str:
    """'+8613800138000' -> '138****8000'; never log or show viewers a whole number."""
    digits = phone[3:] if phone.startswith("+86") else phone
    if len(digits) < 8:
        return "*" * len(digits)
    return digits[:3] + "****" + digits[-4:]
