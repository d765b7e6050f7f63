"""The warning as read: the `WarningIn` model both formats are read into, the CAP rules
they must meet, and the `ParsedWarning` that comes out.

Every problem raises `WarningRejected` with an HTTP status, an English message, and the
field it is about: a JSON path ("areas.0.polygons.1") for JSON, an element path
("/alert/info/area[1]/polygon[2]") for CAP XML, None for the body as a whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dispatcher.areas import Area, ShapeError, circle_shape, polygon_shape
from dispatcher.levels import LEVEL_SEVERITIES, colour_of, parse_level, severity_level, stated_level
from dispatcher.signals import fit_level, signal_of
from dispatcher.vocabulary import LEVELS

STATUSES: tuple[str, ...] = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPES: tuple[str, ...] = ("Alert", "Update", "Cancel", "Ack", "Error")
CANCEL_HEADLINE = "解除预警"

# A field's place in `WarningIn`: ("event",), ("areas", 0, "polygons", 1).
FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Naming:
    """How one format names a field: `label` in a message ("<event>", "event"), `path` as
    the refusal's field ("/alert/info/event", "event")."""

    label: Callable[[FieldPath], str]
    path: Callable[[FieldPath], str]

    def rejected(self, message: str, where: FieldPath, status: int = 400) -> WarningRejected:
        return WarningRejected(message, status, self.path(where))


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
    event_codes: tuple[tuple[str, str], ...] = ()
    signal: str | None = None  # the Chinese warning signal, e.g. 暴雨 (see dispatcher.signals)

    def geocodes(self) -> list[tuple[str, str]]:
        """Every (valueName, value) geocode of every area, in order, without repeats."""
        return list(dict.fromkeys(pair for area in self.areas for pair in area.geocodes))

    def geocode_values(self) -> list[str]:
        """Every geocode value of every area, in order, without repeats."""
        return list(dict.fromkeys(value for area in self.areas for _, value in area.geocodes))

    def reference_keys(self) -> list[tuple[str, str]]:
        """(sender, identifier) of every readable reference, in order."""
        keys = []
        for triple in (self.references or "").split():
            parts = triple.split(",")
            if len(parts) >= 2 and parts[0] and parts[1]:
                keys.append((parts[0], parts[1]))
        return keys

    @property
    def is_drill(self) -> bool:
        return self.status == "Exercise"


class WarningRejected(Exception):
    """A warning that cannot be accepted; `status` is the HTTP status to answer with and
    `field` the field or element path the problem is in (None: the body as a whole)."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ValuePairIn(_Model):
    valueName: str
    value: str


class AreaIn(_Model):
    areaDesc: str = ""
    geocodes: list[str | ValuePairIn] = Field(
        default_factory=list,
        description='codes ("441799101000") or {valueName, value} pairs; 6-, 9- and 12-digit '
        "statistical division codes match the directory's regions",
    )
    polygons: list[str] = Field(
        default_factory=list, description='WGS 84 "lat,lon lat,lon ..." rings, first = last'
    )
    circles: list[str] = Field(default_factory=list, description='"lat,lon radius_km"')


class WarningIn(_Model):
    """A warning posted as JSON: CAP's element names, with a single info block flattened in."""

    model_config = ConfigDict(title="Jiaoying warning")

    identifier: str = Field(min_length=1)
    sender: str = Field(min_length=1)
    sent: str = Field(
        min_length=1,
        description="ISO 8601 with a UTC offset, e.g. 2026-06-12T14:30:00+08:00",
        json_schema_extra={"format": "date-time"},
    )
    status: str = Field(
        json_schema_extra={"enum": list(STATUSES)},
        description="Actual calls people; Exercise runs a drill (messages carry 【演练】); "
        "System, Test and Draft are stored and call nobody",
    )
    msgType: str = Field(
        json_schema_extra={"enum": list(MSG_TYPES)},
        description="Update and Cancel act on the warnings named in references",
    )
    scope: str = "Public"
    references: str | None = Field(None, description='space separated "sender,identifier,sent"')
    language: str = "zh-CN"
    event: str = Field("", description="required unless msgType is Cancel, e.g. 暴雨")
    eventCodes: list[ValuePairIn] = Field(default_factory=list)
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
    expires: str | None = Field(
        None,
        json_schema_extra={"format": "date-time"},
        description="a warning already expired is refused; one that expires while active stops",
    )
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


def json_path(path: FieldPath) -> str:
    """A field of `WarningIn` as JSON names it: "areas.0.polygons.1"."""
    return ".".join(str(part) for part in path) or "(body)"


JSON_NAMING = Naming(label=json_path, path=json_path)


def validated(document: Any, naming: Naming = JSON_NAMING) -> WarningIn:
    """The document as a `WarningIn`, or a 422 naming every problem."""
    try:
        return WarningIn.model_validate(document)
    except ValidationError as exc:
        problems = []
        fields = []
        for item in exc.errors(include_url=False):
            where = naming.path(tuple(item["loc"]))
            context: dict[str, Any] = item.get("ctx") or {}
            message = str(context["error"]) if item["type"] == "value_error" else item["msg"]
            problems.append(f"{where}: {message}")
            fields.append(where)
        raise WarningRejected(
            f"invalid warning: {'; '.join(problems)}", 422, fields[0] if fields else None
        ) from None


def _parse_time(text: str, name: str, naming: Naming) -> datetime:
    label = naming.label((name,))
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise naming.rejected(f"{label} is not an ISO 8601 date-time: {text!r}", (name,)) from None
    if value.utcoffset() is None:
        raise naming.rejected(f"{label} has no UTC offset: {text!r} (CAP requires one)", (name,))
    return value


def _area(area: AreaIn, index: int, naming: Naming) -> Area:
    pairs = (
        ("", code) if isinstance(code, str) else (code.valueName, code.value)
        for code in area.geocodes
    )
    for kind, reader in (("polygons", polygon_shape), ("circles", circle_shape)):
        for position, text in enumerate(getattr(area, kind)):
            if not text:
                continue
            try:
                reader(text)
            except ShapeError as exc:
                where = ("areas", index, kind, position)
                raise naming.rejected(f"{naming.path(where)}: {exc}", where) from None
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


def _level(model: WarningIn, parameters: tuple[tuple[str, str], ...]) -> tuple[str, str | None]:
    """The level and the signal: as stated, else CAP severity fitted to the signal's colours."""
    signal = signal_of(model.event, model.headline)
    level = model.level or stated_level(parameters, model.event, model.headline, model.severity)
    if level is None:
        level = fit_level(severity_level(model.severity), signal)
    return level, signal.name if signal else None


def build_warning(model: WarningIn, naming: Naming, source_format: str) -> ParsedWarning:
    """Applies CAP's rules to a read warning."""
    label = naming.label
    if model.status not in STATUSES:
        expected = ", ".join(STATUSES)
        message = f"unknown {label(('status',))} {model.status!r}: expected {expected}"
        raise naming.rejected(message, ("status",))
    if model.msgType not in MSG_TYPES:
        expected = ", ".join(MSG_TYPES)
        message = f"unknown {label(('msgType',))} {model.msgType!r}: expected {expected}"
        raise naming.rejected(message, ("msgType",))
    if not model.event and model.msgType != "Cancel":
        raise naming.rejected(f"missing {label(('event',))}", ("event",))
    if model.msgType in ("Alert", "Update") and not model.areas:
        raise naming.rejected(f"missing {label(('areas',))}", ("areas",))
    parameters = tuple((pair.valueName, pair.value) for pair in model.parameters)
    level, signal = _level(model, parameters)
    headline = model.headline or _default_headline(model.event, level, model.msgType)
    colour = colour_of(model.severity) if model.severity else None
    return ParsedWarning(
        identifier=model.identifier,
        sender=model.sender,
        sent=_parse_time(model.sent, "sent", naming),
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
        onset=_parse_time(model.onset, "onset", naming) if model.onset else None,
        expires=_parse_time(model.expires, "expires", naming) if model.expires else None,
        language=model.language or "zh-CN",
        areas=tuple(_area(area, index, naming) for index, area in enumerate(model.areas)),
        parameters=parameters,
        source_format=source_format,
        event_codes=tuple((pair.valueName, pair.value) for pair in model.eventCodes),
        signal=signal,
    )
