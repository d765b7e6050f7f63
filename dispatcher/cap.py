"""Parses an incoming warning, CAP XML or JSON, into a `ParsedWarning`.

CAP 1.0, 1.1 and 1.2 are read, including the Chinese national profile (GB/T 35965.1) as sent
by the national early-warning release system: 12-digit administrative division codes as
geocodes, signal colours in the headline or a 预警级别 parameter, XML declared as GB2312/GBK.
XML goes through defusedxml with DTDs, entities and external references refused. JSON is a
flat body with CAP's element names, validated by the `WarningIn` model; a CAP alert is read
into the same model, so both formats meet the same rules.

Every problem raises `WarningRejected` with an HTTP status and an English message naming it:
400 for bad XML, bad JSON syntax or a broken CAP rule, 422 for a JSON body that does not fit
`WarningIn`, 415 for a body that is neither XML nor JSON.

Of several `<info>` blocks the one in zh-CN is used, then any zh*, then the first (an info
without `<language>` is en-US, as CAP says). Only a Cancel may come without `<info>` (in
JSON: without `event`): its event is then "", its headline "解除预警", its language zh-CN
and its level "blue" unless stated.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dispatcher.levels import LEVEL_SEVERITIES, colour_of, level_from, parse_level
from dispatcher.vocabulary import LEVELS

# Namespace URI -> CAP version. "" is an alert without a namespace.
CAP_NAMESPACES: dict[str, str] = {
    "urn:oasis:names:tc:emergency:cap:1.2": "1.2",
    "urn:oasis:names:tc:emergency:cap:1.1": "1.1",
    "http://www.incident.com/cap/1.0": "1.0",
    "": "unqualified",
}
STATUSES: tuple[str, ...] = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPES: tuple[str, ...] = ("Alert", "Update", "Cancel", "Ack", "Error")
CANCEL_HEADLINE = "解除预警"

_JSON_TYPES = frozenset({"application/json", "text/json"})
_XML_TYPES = frozenset({"application/xml", "text/xml", "application/cap+xml"})
# Types that say nothing about the body (curl's default among them): the body is sniffed.
_GENERIC_TYPES = frozenset(
    {"", "*/*", "application/octet-stream", "text/plain", "application/x-www-form-urlencoded"}
)
_BOM = codecs.BOM_UTF8
_DECLARED_ENCODING = re.compile(rb"\A\s*<\?xml[^>]*?\bencoding\s*=\s*[\"']([A-Za-z][\w.:-]*)")
# Encodings expat decodes itself; any other declared encoding is decoded here first.
_EXPAT_ENCODINGS = frozenset({"utf-8", "utf-16", "utf-16-le", "utf-16-be", "ascii", "iso8859-1"})
# GB2312 is routinely declared for GBK text; GB18030 decodes both.
_CHINESE_CODECS = frozenset({"gb2312", "gbk", "gb18030"})


@dataclass(frozen=True)
class Area:
    description: str
    geocodes: tuple[tuple[str, str], ...]  # (valueName, value)
    polygons: tuple[str, ...]  # CAP polygon strings, as given
    circles: tuple[str, ...]  # CAP circle strings, as given


@dataclass(frozen=True)
class ParsedWarning:
    identifier: str
    sender: str
    sent: datetime  # timezone-aware
    status: str  # Actual | Exercise | System | Test | Draft
    msg_type: str  # Alert | Update | Cancel | Ack | Error
    scope: str
    references: str | None  # raw CAP references: space separated "sender,identifier,sent"
    event: str
    level: str  # "blue" | "yellow" | "orange" | "red"
    severity: str | None  # Extreme | Severe | Moderate | Minor | Unknown (colours mapped)
    urgency: str | None
    certainty: str | None
    headline: str
    description: str
    instruction: str
    sender_name: str
    onset: datetime | None
    expires: datetime | None
    language: str
    areas: tuple[Area, ...]
    parameters: tuple[tuple[str, str], ...]
    source_format: str  # "cap" | "json"

    def geocode_values(self) -> list[str]:
        """Every geocode value of every area, in order, without repeats."""
        return list(dict.fromkeys(value for area in self.areas for _, value in area.geocodes))


class WarningRejected(Exception):
    """A warning that cannot be accepted; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# ---------------------------------------------------------------------------------------------
# The model both formats are read into


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ValuePairIn(_Model):
    valueName: str
    value: str


class AreaIn(_Model):
    areaDesc: str = ""
    geocodes: list[str | ValuePairIn] = Field(
        default_factory=list, description='codes ("441799101000") or {valueName, value} pairs'
    )
    polygons: list[str] = Field(default_factory=list, description='"lat,lon lat,lon ..."')
    circles: list[str] = Field(default_factory=list, description='"lat,lon radius_km"')


class WarningIn(_Model):
    """A warning posted as JSON: CAP's element names, with a single info block flattened in."""

    identifier: str = Field(min_length=1)
    sender: str = Field(min_length=1)
    sent: str = Field(
        min_length=1,
        description="ISO 8601 with a UTC offset, e.g. 2026-06-12T14:30:00+08:00",
        json_schema_extra={"format": "date-time"},
    )
    status: str = Field(json_schema_extra={"enum": list(STATUSES)})
    msgType: str = Field(json_schema_extra={"enum": list(MSG_TYPES)})
    scope: str = "Public"
    references: str | None = Field(None, description='space separated "sender,identifier,sent"')
    language: str = "zh-CN"
    event: str = Field("", description="required unless msgType is Cancel")
    level: str | None = Field(
        None, description="red/orange/yellow/blue in any spelling (红色, Ⅱ级, 3...); overrides"
    )
    severity: str | None = None
    urgency: str | None = None
    certainty: str | None = None
    headline: str = Field("", description="defaults to the event and level, e.g. 暴雨红色预警")
    description: str = ""
    instruction: str = ""
    senderName: str = ""
    onset: str | None = Field(None, json_schema_extra={"format": "date-time"})
    expires: str | None = Field(None, json_schema_extra={"format": "date-time"})
    parameters: list[ValuePairIn] = Field(default_factory=list)
    areas: list[AreaIn] = Field(default_factory=list, description="required for Alert and Update")

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str | None) -> str | None:
        if not value:
            return None
        level = parse_level(value)
        if level is None:
            raise ValueError(
                f"unknown level {value!r}: use red/orange/yellow/blue, 红色..蓝色 or 1-4"
            )
        return level


def _validated(document: Any) -> WarningIn:
    try:
        return WarningIn.model_validate(document)
    except ValidationError as exc:
        problems = []
        for item in exc.errors(include_url=False):
            where = ".".join(str(part) for part in item["loc"]) or "(body)"
            context: dict[str, Any] = item.get("ctx") or {}
            message = str(context["error"]) if item["type"] == "value_error" else item["msg"]
            problems.append(f"{where}: {message}")
        raise WarningRejected(f"invalid warning: {'; '.join(problems)}", 422) from None


def _parse_time(text: str, label: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise WarningRejected(f"{label} is not an ISO 8601 date-time: {text!r}") from None
    if value.utcoffset() is None:
        raise WarningRejected(f"{label} has no UTC offset: {text!r} (CAP requires one)")
    return value


def _area(area: AreaIn) -> Area:
    pairs = (
        ("", code) if isinstance(code, str) else (code.valueName, code.value)
        for code in area.geocodes
    )
    return Area(
        description=area.areaDesc,
        geocodes=tuple(pair for pair in pairs if pair[1]),
        polygons=tuple(polygon for polygon in area.polygons if polygon),
        circles=tuple(circle for circle in area.circles if circle),
    )


def _default_headline(event: str, level: str, msg_type: str) -> str:
    """A missing headline: "暴雨红色预警", for a Cancel "解除暴雨红色预警" or just "解除预警"."""
    if not event:
        return CANCEL_HEADLINE
    headline = f"{event}{LEVELS[level]}预警"
    return f"解除{headline}" if msg_type == "Cancel" else headline


def _warning(model: WarningIn, label: Callable[[str], str], source_format: str) -> ParsedWarning:
    """Applies CAP's rules to a read warning; `label` names a field in messages."""
    if model.status not in STATUSES:
        expected = ", ".join(STATUSES)
        raise WarningRejected(f"unknown {label('status')} {model.status!r}: expected {expected}")
    if model.msgType not in MSG_TYPES:
        expected = ", ".join(MSG_TYPES)
        raise WarningRejected(f"unknown {label('msgType')} {model.msgType!r}: expected {expected}")
    if not model.event and model.msgType != "Cancel":
        raise WarningRejected(f"missing {label('event')}")
    if model.msgType in ("Alert", "Update") and not model.areas:
        raise WarningRejected(f"missing {label('area')}")
    parameters = tuple((pair.valueName, pair.value) for pair in model.parameters)
    level = model.level or level_from(parameters, model.event, model.headline, model.severity)
    headline = model.headline or _default_headline(model.event, level, model.msgType)
    colour = colour_of(model.severity) if model.severity else None
    return ParsedWarning(
        identifier=model.identifier,
        sender=model.sender,
        sent=_parse_time(model.sent, label("sent")),
        status=model.status,
        msg_type=model.msgType,
        scope=model.scope or "Public",
        references=" ".join((model.references or "").split()) or None,
        event=model.event,
        level=level,
        severity=LEVEL_SEVERITIES[colour] if colour else model.severity or None,
        urgency=model.urgency or None,
        certainty=model.certainty or None,
        headline=headline,
        description=model.description,
        instruction=model.instruction,
        sender_name=model.senderName,
        onset=_parse_time(model.onset, label("onset")) if model.onset else None,
        expires=_parse_time(model.expires, label("expires")) if model.expires else None,
        language=model.language or "zh-CN",
        areas=tuple(_area(area) for area in model.areas),
        parameters=parameters,
        source_format=source_format,
    )


# ---------------------------------------------------------------------------------------------
# CAP XML


def _xml_source(data: bytes) -> bytes | str:
    """The body as expat should get it: bytes, or text decoded here when the XML declaration
    names an encoding expat cannot decode (multi-byte ones such as GBK). Blank lines before
    the XML declaration, which some senders emit, are dropped."""
    if data.startswith(_BOM):
        return data.removeprefix(_BOM).lstrip()  # UTF-8, expat's default
    data = data.lstrip()
    declared = _DECLARED_ENCODING.match(data)
    if declared is None:
        return data
    name = declared.group(1).decode("ascii")
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise WarningRejected(f"unsupported XML encoding {name!r}") from None
    if codec in _EXPAT_ENCODINGS:
        return data
    try:
        return data.decode("gb18030" if codec in _CHINESE_CODECS else codec)
    except UnicodeDecodeError as exc:
        raise WarningRejected(
            f"body is not valid {name}: {exc.reason} at byte {exc.start}"
        ) from None


def _parse_tree(data: bytes) -> Element:
    try:
        return fromstring(
            _xml_source(data), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except (DTDForbidden, EntitiesForbidden):
        raise WarningRejected("XML with DTD/entity declarations is refused") from None
    except ExternalReferenceForbidden:
        raise WarningRejected("XML with external references is refused") from None
    except (ParseError, ValueError) as exc:  # ValueError: expat refusing an encoding
        raise WarningRejected(f"malformed XML: {exc}") from None


class _Reader:
    """Reads CAP elements of one namespace; elements of any other namespace are ignored."""

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{{{namespace}}}" if namespace else ""

    def all(self, element: Element, name: str) -> list[Element]:
        return element.findall(self.prefix + name)

    def text(self, element: Element, name: str) -> str:
        child = element.find(self.prefix + name)
        return "".join(child.itertext()).strip() if child is not None else ""

    def texts(self, element: Element, name: str) -> list[str]:
        return ["".join(child.itertext()).strip() for child in self.all(element, name)]

    def pairs(self, element: Element, name: str) -> list[dict[str, str]]:
        """`<name><valueName/><value/></name>` pairs; CAP 1.0's bare "valueName=value" text
        (or a bare value, taken with an empty valueName) is accepted too."""
        pairs = []
        for child in self.all(element, name):
            if len(child):  # has child elements
                key, value = self.text(child, "valueName"), self.text(child, "value")
            else:
                raw = "".join(child.itertext()).strip()
                key, equals, value = raw.partition("=")
                key, value = (key, value) if equals else ("", raw)
            pairs.append({"valueName": key, "value": value})
        return pairs

    def area(self, element: Element) -> dict[str, Any]:
        return {
            "areaDesc": self.text(element, "areaDesc"),
            "geocodes": self.pairs(element, "geocode"),
            "polygons": self.texts(element, "polygon"),
            "circles": self.texts(element, "circle"),
        }


def _choose_info(reader: _Reader, infos: list[Element]) -> Element:
    languages = [(reader.text(info, "language") or "en-US").lower() for info in infos]
    for wanted in (lambda lang: lang == "zh-cn", lambda lang: lang.startswith("zh")):
        for info, language in zip(infos, languages, strict=True):
            if wanted(language):
                return info
    return infos[0]


def parse_cap_xml(data: bytes) -> ParsedWarning:
    """Parses a CAP 1.0/1.1/1.2 alert (or an un-namespaced one) into a `ParsedWarning`."""
    root = _parse_tree(data)
    namespace, _, local = root.tag[1:].rpartition("}") if root.tag[0] == "{" else ("", "", root.tag)
    if local != "alert":
        raise WarningRejected(f"root element is <{local}>, not a CAP <alert>")
    if namespace not in CAP_NAMESPACES:
        raise WarningRejected(f"unknown CAP namespace {namespace!r}")
    reader = _Reader(namespace)
    header = ("identifier", "sender", "sent", "status", "msgType", "scope", "references")
    document: dict[str, Any] = {name: reader.text(root, name) for name in header}
    missing = [f"<{name}>" for name in header[:5] if not document[name]]
    if missing:
        raise WarningRejected(f"missing {', '.join(missing)}")
    infos = reader.all(root, "info")
    if not infos and document["msgType"] != "Cancel":
        raise WarningRejected("missing <info>")
    if infos:
        info = _choose_info(reader, infos)
        if not reader.text(info, "event"):
            raise WarningRejected("missing <event>")
        for name in ("event", "severity", "urgency", "certainty", "headline", "description"):
            document[name] = reader.text(info, name)
        for name in ("instruction", "senderName", "onset", "expires"):
            document[name] = reader.text(info, name)
        document["language"] = reader.text(info, "language") or "en-US"
        document["parameters"] = reader.pairs(info, "parameter")
        document["areas"] = [reader.area(area) for area in reader.all(info, "area")]
    return _warning(_validated(document), lambda name: f"<{name}>", "cap")


# ---------------------------------------------------------------------------------------------
# JSON, and either


def parse_warning_json(data: bytes) -> ParsedWarning:
    """Parses a JSON warning (see `WarningIn`) into a `ParsedWarning`."""
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise WarningRejected(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise WarningRejected(f"invalid JSON: {exc}") from None
    return _warning(_validated(document), lambda name: "areas" if name == "area" else name, "json")


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
    start = body.removeprefix(_BOM).lstrip()
    if not start:
        raise WarningRejected("empty body")
    if start.startswith(b"<"):
        return parse_cap_xml(body)
    if start.startswith(b"{"):
        return parse_warning_json(body)
    raise WarningRejected("the body is neither XML nor JSON", 415)
