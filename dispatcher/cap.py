"""Parses an incoming warning, CAP XML or JSON, into a `ParsedWarning`.

CAP 1.0, 1.1 and 1.2 are read (`dispatcher.cap_xml`), including the Chinese national
profile (GB/T 35965.1) as sent by the national early-warning release system: 12-digit
administrative division codes as geocodes, signal colours in the headline, the severity or
a 预警级别 parameter (`dispatcher.levels`), the signal's event (`dispatcher.signals`), XML
declared as GB2312/GBK. JSON is a flat body with CAP's element names, validated by the
`WarningIn` model (its JSON Schema is served at /api/v1/schema/warning.json); a CAP alert
is read into the same model, so both formats meet the same rules
(`dispatcher.warning_model`).

Every problem raises `WarningRejected` with an HTTP status, an English message naming it
and the field (JSON path or XML element path): 400 for bad XML, bad JSON syntax or a broken
CAP rule, 422 for a JSON body that does not fit `WarningIn`, 415 for a body that is neither
XML nor JSON.

Only a Cancel may come without `<info>` (in JSON: without `event`): its event is then "",
its headline "解除预警", its language zh-CN and its level "blue" unless stated.
"""

from __future__ import annotations

import json

from dispatcher.areas import Area
from dispatcher.cap_xml import BOM, CAP_NAMESPACES, parse_cap_xml
from dispatcher.levels import level_from
from dispatcher.warning_model import (
    CANCEL_HEADLINE,
    JSON_NAMING,
    MSG_TYPES,
    STATUSES,
    ParsedWarning,
    WarningIn,
    WarningRejected,
    build_warning,
    validated,
)

__all__ = [
    "CANCEL_HEADLINE",
    "CAP_NAMESPACES",
    "MSG_TYPES",
    "STATUSES",
    "Area",
    "ParsedWarning",
    "WarningIn",
    "WarningRejected",
    "level_from",
    "parse_cap_xml",
    "parse_warning",
    "parse_warning_json",
]

_JSON_TYPES = frozenset({"application/json", "text/json"})
_XML_TYPES = frozenset({"application/xml", "text/xml", "application/cap+xml"})
# Types that say nothing about the body (curl's default among them): the body is sniffed.
_GENERIC_TYPES = frozenset(
    {"", "*/*", "application/octet-stream", "text/plain", "application/x-www-form-urlencoded"}
)


def parse_warning_json(data: bytes) -> ParsedWarning:
    """Parses a JSON warning (see `WarningIn`) into a `ParsedWarning`."""
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise WarningRejected(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise WarningRejected(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise WarningRejected("invalid JSON: nested too deeply") from None
    return build_warning(validated(document), JSON_NAMING, "json")


def parse_warning(body: bytes, content_type: str | None) -> ParsedWarning:
    """Parses a posted warning, choosing XML or JSON by its content type; a missing or
    generic type is settled by the body's first non-blank character ('<' or '{')."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in _JSON_TYPES or media.endswith("+json"):
        return parse_warning_json(body)
    if media in _XML_TYPES or media.endswith("+xml"):
        return parse_cap_xml(body)
    if media not in _GENERIC_TYPES:
        raise WarningRejected(
            f"unsupported content type {media!r}: send application/json or application/xml", 415
        )
    start = body.removeprefix(BOM).lstrip()
    if not start:
        raise WarningRejected("empty body")
    if start.startswith(b"<"):
        return parse_cap_xml(body)
    if start.startswith(b"{"):
        return parse_warning_json(body)
    raise WarningRejected("the body is neither XML nor JSON", 415)
