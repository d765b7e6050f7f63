"""CAP XML in: decoding, hardened parsing and reading an `<alert>` into a `WarningIn`.

CAP 1.0, 1.1 and 1.2 are read, and alerts without a namespace. XML goes through defusedxml
with DTDs, entities and external references refused. A UTF-8 BOM is dropped; an encoding
expat cannot decode itself (GBK, GB2312, GB18030, as Chinese senders declare) is decoded
here first. Elements of other namespaces (an XML signature, say) are ignored.

Of several `<info>` blocks the one in zh-CN is used, then any zh*, then the first (an info
without `<language>` is en-US, as CAP says). Refusals name the element path of the problem:
"/alert/info/area[2]/polygon[1]".
"""

from __future__ import annotations

import codecs
import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring

from dispatcher.warning_model import (
    FieldPath,
    Naming,
    ParsedWarning,
    WarningRejected,
    build_warning,
    validated,
)

# Namespace URI -> CAP version. "" is an alert without a namespace.
CAP_NAMESPACES: dict[str, str] = {
    "urn:oasis:names:tc:emergency:cap:1.2": "1.2",
    "urn:oasis:names:tc:emergency:cap:1.1": "1.1",
    "http://www.incident.com/cap/1.0": "1.0",
    "": "unqualified",
}
BOM = codecs.BOM_UTF8
_DECLARED_ENCODING = re.compile(rb"\A\s*<\?xml[^>]*?\bencoding\s*=\s*[\"']([A-Za-z][\w.:-]*)")
# Encodings expat decodes itself; any other declared encoding is decoded here first.
_EXPAT_ENCODINGS = frozenset({"utf-8", "utf-16", "utf-16-le", "utf-16-be", "ascii", "iso8859-1"})
# GB2312 is routinely declared for GBK text; GB18030 decodes both.
_CHINESE_CODECS = frozenset({"gb2312", "gbk", "gb18030"})
_HEADER = ("identifier", "sender", "sent", "status", "msgType", "scope", "references")
# WarningIn's list fields -> the CAP element each item is.
_ELEMENTS = {
    "areas": "area",
    "polygons": "polygon",
    "circles": "circle",
    "geocodes": "geocode",
    "parameters": "parameter",
    "eventCodes": "eventCode",
}


def _xml_naming(info_index: int | None) -> Naming:
    """Element names and paths; `info_index` (1-based) when the alert has several infos."""
    info = "info" if info_index is None else f"info[{info_index}]"

    def path(where: FieldPath) -> str:
        parts: list[str] = []
        for part in where:
            if isinstance(part, int):
                parts[-1] = f"{parts[-1]}[{part + 1}]"
            else:
                parts.append(_ELEMENTS.get(part, part))
        prefix = "/alert/" if where and where[0] in _HEADER else f"/alert/{info}/"
        return prefix + "/".join(parts)

    def label(where: FieldPath) -> str:
        last = [part for part in where if isinstance(part, str)][-1]
        return f"<{_ELEMENTS.get(last, last)}>"

    return Naming(label=label, path=path)


def _xml_source(data: bytes) -> bytes | str:
    """The body as expat should get it: bytes, or text decoded here when the XML declaration
    names an encoding expat cannot decode (multi-byte ones such as GBK). Blank lines before
    the XML declaration, which some senders emit, are dropped."""
    if data.startswith(BOM):
        return data.removeprefix(BOM).lstrip()  # UTF-8, expat's default
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


def _choose_info(reader: _Reader, infos: list[Element]) -> int:
    """The index of the info to read: zh-CN, then any zh*, then the first."""
    languages = [(reader.text(info, "language") or "en-US").lower() for info in infos]
    for wanted in (lambda lang: lang == "zh-cn", lambda lang: lang.startswith("zh")):
        for index, language in enumerate(languages):
            if wanted(language):
                return index
    return 0


def parse_cap_xml(data: bytes) -> ParsedWarning:
    """Parses a CAP 1.0/1.1/1.2 alert (or an un-namespaced one) into a `ParsedWarning`."""
    root = _parse_tree(data)
    namespace, _, local = root.tag[1:].rpartition("}") if root.tag[0] == "{" else ("", "", root.tag)
    if local != "alert":
        raise WarningRejected(f"root element is <{local}>, not a CAP <alert>", field=f"/{local}")
    if namespace not in CAP_NAMESPACES:
        raise WarningRejected(f"unknown CAP namespace {namespace!r}", field="/alert")
    reader = _Reader(namespace)
    document: dict[str, Any] = {name: reader.text(root, name) for name in _HEADER}
    missing = [name for name in _HEADER[:5] if not document[name]]
    if missing:
        names = ", ".join(f"<{name}>" for name in missing)
        raise WarningRejected(f"missing {names}", field=f"/alert/{missing[0]}")
    infos = reader.all(root, "info")
    if not infos and document["msgType"] != "Cancel":
        raise WarningRejected("missing <info>", field="/alert/info")
    chosen = _choose_info(reader, infos) if infos else 0
    naming = _xml_naming(chosen + 1 if len(infos) > 1 else None)
    if infos:
        info = infos[chosen]
        if not reader.text(info, "event"):
            raise naming.rejected("missing <event>", ("event",))
        for name in ("event", "severity", "urgency", "certainty", "headline", "description"):
            document[name] = reader.text(info, name)
        for name in ("instruction", "senderName", "onset", "expires"):
            document[name] = reader.text(info, name)
        document["language"] = reader.text(info, "language") or "en-US"
        document["eventCodes"] = reader.pairs(info, "eventCode")
        document["parameters"] = reader.pairs(info, "parameter")
        document["areas"] = [reader.area(area) for area in reader.all(info, "area")]
    return build_warning(validated(document, naming), naming, "cap")
