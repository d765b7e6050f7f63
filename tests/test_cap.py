"""Tests of warning parsing (dispatcher.cap: CAP XML and JSON) and levels (dispatcher.levels)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from dispatcher.cap import (
    CANCEL_HEADLINE,
    Area,
    ParsedWarning,
    WarningIn,
    WarningRejected,
    level_from,
    parse_cap_xml,
    parse_warning,
    parse_warning_json,
)
from dispatcher.levels import colour_of, level_in_text, parse_level
from dispatcher.signals import signal_of
from dispatcher.vocabulary import LEVELS

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "cap"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cap"
CST = timezone(timedelta(hours=8))

needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason=f"shared CAP samples not found at {SAMPLES}"
)


def rejected(call: Any, *args: Any) -> WarningRejected:
    """Runs `call(*args)`, which must raise WarningRejected, and returns the exception."""
    with pytest.raises(WarningRejected) as caught:
        call(*args)
    return caught.value


# A small valid Chinese-profile alert that the tests below bend in one place at a time.
BASE = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>44179941600000_20260701080000_0</identifier>
  <sender>441799000000@cma.gov.cn</sender>
  <sent>2026-07-01T08:00:00+08:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨</event>
    <urgency>Immediate</urgency>
    <severity>Moderate</severity>
    <certainty>Likely</certainty>
    <senderName>青溪县气象台</senderName>
    <headline>青溪县气象台发布暴雨黄色预警信号</headline>
    <description>预计6小时内城关镇降雨量将达50毫米以上。</description>
    <area>
      <areaDesc>青溪县城关镇</areaDesc>
      <geocode><valueName>行政区划代码</valueName><value>441799100000</value></geocode>
    </area>
  </info>
</alert>
"""


def base(old: str = "", new: str = "") -> bytes:
    """BASE with one piece replaced (which must be present), as UTF-8 bytes."""
    if old:
        assert old in BASE, old
    return BASE.replace(old, new).encode() if old else BASE.encode()


# ---------------------------------------------------------------------------------------------
# The shared real-world samples

# file, identifier, sender, msg_type, areas, geocodes, polygons, circles, level
SAMPLE_EXPECTATIONS = [
    ("v1dot0_appendix_adot1.xml", "43b080713727", "hsas@dhs.gov", "Alert", 1, 0, 0, 0, "orange"),
    ("v1dot1_appendix_adot1.xml", "43b080713727", "hsas@dhs.gov", "Alert", 1, 0, 0, 0, "orange"),
    ("v1dot2_appendix_adot1.xml", "43b080713727", "hsas@dhs.gov", "Alert", 1, 0, 0, 0, "orange"),
    (
        "v1dot2_appendix_adot2.xml",
        "KSTO1055887203",
        "KSTO@NWS.NOAA.GOV",
        "Alert",
        1,
        3,
        1,
        0,
        "orange",
    ),
    (
        "v1dot2_appendix_adot3.xml",
        "TRI13970876.2",
        "trinet@caltech.edu",
        "Update",
        1,
        0,
        0,
        1,
        "blue",
    ),
    (
        "v1dot2_appendix_adot4.xml",
        "KAR0-0306112239-SW",
        "KARO@CLETS.DOJ.CA.GOV",
        "Alert",
        1,
        1,
        0,
        0,
        "orange",
    ),
    ("google-PAAQ-4-mg5a94.xml", "PAAQ-4-mg5a94", "wcatwc@noaa.gov", "Update", 1, 0, 0, 1, "blue"),
    (
        "nws-5c2cf27b1f56885d61654dc47fa411d5.xml",
        "NOAA-NWS-ALERTS-MN1261CB03F0E0.BlizzardWarning.1261CB10BF00MN.DLHWSWDLH."
        "5c2cf27b1f56885d61654dc47fa411d5",
        "w-nws.webmaster@noaa.gov",
        "Alert",
        1,
        4,
        0,
        0,
        "orange",
    ),
    (
        "ipaws-5e6dd964023f1930ef638846.xml",
        "309104501346800",
        "309104501346800",
        "Alert",
        1,
        5,
        0,
        0,
        "blue",
    ),
    (
        "ipaws-5ea321f39fc226a7b44b6874.xml",
        "482277582702553",
        "482277582702553",
        "Alert",
        1,
        1,
        0,
        0,
        "red",
    ),
]


def load_sample(name: str) -> ParsedWarning:
    return parse_cap_xml((SAMPLES / name).read_bytes())


@needs_samples
@pytest.mark.parametrize(
    (
        "name",
        "identifier",
        "sender",
        "msg_type",
        "areas",
        "geocodes",
        "polygons",
        "circles",
        "level",
    ),
    SAMPLE_EXPECTATIONS,
)
def test_shared_sample(
    name: str,
    identifier: str,
    sender: str,
    msg_type: str,
    areas: int,
    geocodes: int,
    polygons: int,
    circles: int,
    level: str,
) -> None:
    warning = load_sample(name)
    assert warning.identifier == identifier
    assert warning.sender == sender
    assert warning.msg_type == msg_type
    assert warning.status == "Actual"
    assert warning.scope == "Public"
    assert warning.source_format == "cap"
    assert warning.sent.utcoffset() is not None
    assert len(warning.areas) == areas
    assert sum(len(area.geocodes) for area in warning.areas) == geocodes
    assert sum(len(area.polygons) for area in warning.areas) == polygons
    assert sum(len(area.circles) for area in warning.areas) == circles
    assert warning.level == level


@needs_samples
def test_every_shared_sample_is_covered() -> None:
    covered = {row[0] for row in SAMPLE_EXPECTATIONS}
    assert {path.name for path in SAMPLES.glob("*.xml")} == covered


@needs_samples
def test_cap10_sample_reads_bare_parameter_text() -> None:
    warning = load_sample("v1dot0_appendix_adot1.xml")
    assert warning.parameters == (("HSAS", "ORANGE"),)
    assert warning.event == "Homeland Security Advisory System Update"
    assert warning.headline == "Homeland Security Sets Code ORANGE"
    assert warning.severity == "Severe"
    assert warning.language == "en-US"  # no <language>: CAP's default
    assert warning.sent == datetime(2003, 4, 2, 19, 39, 1, tzinfo=UTC)
    assert warning.areas[0].description == "U.S. nationwide and interests worldwide"
    assert warning.description.startswith("The Department of Homeland Security has elevated")


@needs_samples
def test_thunderstorm_sample_areas_and_times() -> None:
    warning = load_sample("v1dot2_appendix_adot2.xml")
    area = warning.areas[0]
    assert area.polygons == (
        "38.47,-120.14 38.34,-119.95 38.52,-119.74 38.62,-119.89 38.47,-120.14",
    )
    assert area.geocodes == (("SAME", "006109"), ("SAME", "006009"), ("SAME", "006003"))
    assert warning.geocode_values() == ["006109", "006009", "006003"]
    assert warning.expires == datetime(2003, 6, 17, 16, 0, tzinfo=timezone(timedelta(hours=-7)))
    assert warning.urgency == "Immediate"
    assert warning.certainty == "Observed"
    assert warning.sender_name == "NATIONAL WEATHER SERVICE SACRAMENTO CA"
    assert warning.instruction == "TAKE COVER IN A SUBSTANTIAL SHELTER UNTIL THE STORM PASSES."


@needs_samples
def test_earthquake_update_sample_references_and_circle() -> None:
    warning = load_sample("v1dot2_appendix_adot3.xml")
    assert warning.references == "trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00"
    assert warning.areas[0].circles == ("32.9525,-115.5527 0",)
    assert ("Magnitude", "3.4 Ml") in warning.parameters
    assert len(warning.parameters) == 5
    assert warning.severity == "Minor"


@needs_samples
def test_two_language_sample_without_chinese_takes_the_first_info() -> None:
    warning = load_sample("v1dot2_appendix_adot4.xml")
    assert warning.language == "en-US"
    assert warning.event == "Child Abduction"
    assert warning.headline == "Amber Alert in Los Angeles County"  # "Amber" is not orange
    assert warning.areas[0].description == "Los Angeles County"


@needs_samples
def test_google_sample_ignores_the_signature_and_keeps_every_reference() -> None:
    warning = load_sample("google-PAAQ-4-mg5a94.xml")
    assert warning.references is not None
    triples = warning.references.split(" ")
    assert len(triples) == 3
    assert triples[0] == "wcatwc@noaa.gov,PAAQ-1-mg5a94,2013-01-05T09:01:16-00:00"
    assert warning.severity == "Unknown"
    assert warning.onset == datetime(2013, 1, 5, 10, 58, 23, tzinfo=UTC)
    assert warning.areas[0].circles == ("55.3,-134.9 0.0",)
    assert len(warning.parameters) == 11


@needs_samples
def test_nws_sample_drops_the_empty_polygon() -> None:
    warning = load_sample("nws-5c2cf27b1f56885d61654dc47fa411d5.xml")
    assert warning.areas[0].polygons == ()
    assert warning.geocode_values() == ["027031", "027075", "MNZ020", "MNZ021"]
    assert ("WMOHEADER", "") in warning.parameters
    assert warning.event == "Blizzard Warning"


@needs_samples
def test_large_signed_ipaws_sample_parses() -> None:
    path = SAMPLES / "ipaws-5ea321f39fc226a7b44b6874.xml"
    assert path.stat().st_size > 400_000
    warning = parse_cap_xml(path.read_bytes())
    assert warning.severity == "Extreme"
    assert warning.event == "Civil Emergency Message"
    assert warning.geocode_values() == ["026000"]
    assert warning.areas[0].description == "State of MI"
    assert ("WEAHandling", "Imminent Threat") in warning.parameters


# ---------------------------------------------------------------------------------------------
# Chinese national-profile fixtures


def load_fixture(name: str) -> ParsedWarning:
    return parse_cap_xml((FIXTURES / name).read_bytes())


def test_rainstorm_red_fixture() -> None:
    warning = load_fixture("qingxi-rainstorm-red.xml")
    assert warning.identifier == "44179941600000_20260612143000_0"
    assert warning.sender == "441799000000@cma.gov.cn"
    assert warning.sent == datetime(2026, 6, 12, 14, 30, tzinfo=CST)
    assert warning.msg_type == "Alert"
    assert warning.event == "暴雨"
    assert warning.level == "red"
    assert warning.severity == "Extreme"
    assert warning.headline == "青溪县气象台发布暴雨红色预警信号"
    assert warning.sender_name == "青溪县气象台"
    assert warning.language == "zh-CN"
    assert warning.onset == datetime(2026, 6, 12, 14, 30, tzinfo=CST)
    assert warning.expires == datetime(2026, 6, 13, 14, 30, tzinfo=CST)
    assert warning.instruction.startswith("1.政府及相关部门")
    assert warning.references is None
    assert warning.areas == (
        Area(
            description="青溪县城关镇、龙潭镇、石门乡",
            geocodes=(
                ("行政区划代码", "441799100000"),
                ("行政区划代码", "441799101000"),
                ("行政区划代码", "441799200000"),
            ),
            polygons=(),
            circles=(),
        ),
    )
    assert warning.geocode_values() == ["441799100000", "441799101000", "441799200000"]


def test_typhoon_orange_fixture() -> None:
    warning = load_fixture("qingxi-typhoon-orange.xml")
    assert warning.event == "台风"
    assert warning.level == "orange"
    assert warning.parameters == (("预警级别", "橙色"),)
    assert warning.headline == "青溪县气象台发布台风橙色预警信号"
    assert warning.urgency == "Expected"
    assert warning.onset == datetime(2026, 8, 3, 18, 0, tzinfo=CST)
    area = warning.areas[0]
    assert len(area.polygons) == 1
    assert area.polygons[0].startswith("21.80,111.90 ")
    assert warning.geocode_values() == ["441799102000", "441799103000", "441799001000"]


def test_bilingual_fixture_prefers_the_chinese_info() -> None:
    warning = load_fixture("qingxi-gale-yellow-bilingual.xml")
    assert warning.language == "zh-CN"
    assert warning.event == "大风"
    assert warning.headline == "青溪县气象台发布大风黄色预警信号"
    assert warning.sender_name == "青溪县气象台"
    assert warning.parameters == (("预警级别", "黄色"),)  # from the chosen info only
    assert warning.level == "yellow"
    assert warning.areas[0].description == "青溪县"
    assert warning.geocode_values() == ["441799000000"]


def test_cancel_fixture_references_the_red_warning() -> None:
    cancel = load_fixture("qingxi-rainstorm-cancel.xml")
    original = load_fixture("qingxi-rainstorm-red.xml")
    assert cancel.msg_type == "Cancel"
    assert cancel.references is not None
    sender, identifier, sent = cancel.references.split(",")
    assert (sender, identifier) == (original.sender, original.identifier)
    assert datetime.fromisoformat(sent) == original.sent
    assert cancel.headline == "青溪县气象台解除暴雨红色预警信号"
    assert cancel.level == "red"
    assert cancel.urgency == "Past"
    assert cancel.geocode_values() == original.geocode_values()


def test_every_fixture_parses_through_parse_warning() -> None:
    names = sorted(path.name for path in FIXTURES.glob("*.xml"))
    assert len(names) == 8
    for name in names:
        body = (FIXTURES / name).read_bytes()
        assert parse_warning(body, "application/cap+xml") == parse_cap_xml(body)


def test_typhoon_update_fixture_references_the_alert() -> None:
    update = load_fixture("qingxi-typhoon-orange-update.xml")
    alert = load_fixture("qingxi-typhoon-orange.xml")
    assert update.msg_type == "Update"
    assert update.reference_keys() == [(alert.sender, alert.identifier)]
    assert update.level == alert.level == "orange"
    assert update.signal == "台风"
    assert update.event_codes == (("预警信号", "台风"),)
    assert set(alert.geocode_values()) < set(update.geocode_values())


def test_gb2312_fixture() -> None:
    warning = load_fixture("qingxi-cold-wave-blue-gb2312.xml")
    assert warning.event == "寒潮"
    assert warning.level == "blue"
    assert warning.headline == "青溪县气象台发布寒潮蓝色预警信号"
    assert warning.geocode_values() == ["441799"]


def test_exercise_fixture_is_a_drill() -> None:
    warning = load_fixture("qingxi-geohazard-orange-exercise.xml")
    assert (warning.status, warning.is_drill) == ("Exercise", True)
    assert warning.signal == "地质灾害"
    assert warning.level == "orange"


def test_hail_fixture_without_colour_is_fitted_to_the_signal() -> None:
    warning = load_fixture("qingxi-hail-circle.xml")
    assert warning.signal == "冰雹"
    assert warning.severity == "Moderate"  # yellow by severity; hail has no yellow signal
    assert warning.level == "orange"
    assert warning.areas[0].circles == ("21.75,111.75 8",)


# ---------------------------------------------------------------------------------------------
# Level mapping


# event, headline, parameters, severity -> level: the whole mapping in one table
LEVEL_TABLE_CASES = [
    ("暴雨", "青溪县气象台发布暴雨红色预警信号", [], "Extreme", "red"),
    ("暴雨", "", [("预警级别", "橙色")], "Minor", "orange"),
    ("台风", "", [], "Red", "red"),
    ("暴雪", "暴雪Ⅱ级预警", [], None, "orange"),
    ("寒潮", "", [], "Minor", "blue"),
    ("大风", "", [], "Moderate", "yellow"),
    ("沙尘暴", "", [], "Minor", "yellow"),  # no blue sandstorm signal
    ("高温", "", [], None, "yellow"),  # unknown severity -> blue -> lowest heat signal
    ("干旱", "", [], "Moderate", "orange"),  # drought: orange or red only
    ("雷电", "", [], "Extreme", "red"),
    ("冰雹", "", [], "Minor", "orange"),
    ("霜冻", "", [], "Extreme", "orange"),  # frost: blue to orange
    ("大雾", "", [], "Severe", "orange"),
    ("霾", "", [], "Minor", "yellow"),
    ("道路结冰", "", [], "Moderate", "yellow"),
    ("地质灾害", "地质灾害气象风险三级预警", [], None, "yellow"),
    ("山洪", "", [], "Severe", "orange"),
    ("洪水", "", [("预警级别", "Ⅳ级")], None, "blue"),
    ("Flash Flood Warning", "", [], "Minor", "blue"),
    ("Heat Advisory", "", [], "Minor", "blue"),  # not a Chinese signal: severity as is
    ("霜冻", "霜冻红色预警", [], None, "red"),  # a stated colour is kept, even an odd one
]


@pytest.mark.parametrize(
    ("event", "headline", "parameters", "severity", "level"), LEVEL_TABLE_CASES
)
def test_level_mapping_table(
    event: str,
    headline: str,
    parameters: list[tuple[str, str]],
    severity: str | None,
    level: str,
) -> None:
    body = json.loads(json_body(parameters=[], headline=headline))
    body.update(event=event, severity=severity)
    body["parameters"] = [{"valueName": name, "value": value} for name, value in parameters]
    assert parse_warning_json(json.dumps(body).encode()).level == level


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("暴雨", "暴雨"),
        ("暴雨预警信号", "暴雨"),
        ("", None),
        ("Rainstorm", "暴雨"),
        ("Flash Flood Warning", "山洪"),
        ("Flood Warning", "洪水"),
        ("floodgate test", None),
        ("Civil Emergency Message", None),
        ("暴雨引发山洪", "暴雨"),
    ],
)
def test_signal_of(text: str, signal: str | None) -> None:
    found = signal_of(text)
    assert (found.name if found else None) == signal


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("红色", "red"),
        ("橙色", "orange"),
        ("黄色", "yellow"),
        ("蓝色", "blue"),
        ("红", "red"),
        ("橙", "orange"),
        ("黄", "yellow"),
        ("蓝", "blue"),
        ("Red", "red"),
        ("ORANGE", "orange"),
        ("yellow", "yellow"),
        (" Blue ", "blue"),
        ("一级", "red"),
        ("二级", "orange"),
        ("三级", "yellow"),
        ("四级", "blue"),
        ("Ⅰ级", "red"),
        ("Ⅱ级", "orange"),
        ("Ⅲ级", "yellow"),
        ("Ⅳ级", "blue"),
        ("III级", "yellow"),
        ("Ⅳ", "blue"),
        ("1", "red"),
        ("2", "orange"),
        ("3", "yellow"),
        ("4", "blue"),
        ("特别严重", "red"),
        ("较重", "yellow"),
        ("红色预警", "red"),
        ("Ⅱ级（严重）", "orange"),
    ],
)
def test_level_parameter_values(value: str, level: str) -> None:
    assert parse_level(value) == level
    assert level_from([("预警级别", value)], "", "", None) == level


@pytest.mark.parametrize(
    "name",
    ["level", "LEVEL", "预警级别", "预警等级", "signalLevel", "color", "Colour", "warningLevel"],
)
def test_level_parameter_names(name: str) -> None:
    assert level_from([(name, "橙色")], "暴雨", "", "Minor") == "orange"
    assert level_from([("alertlevel", "1"), ("severityLevel", "4")], "", "", None) == "red"


def test_unrelated_parameters_and_unknown_values_are_passed_over() -> None:
    parameters = [("HSAS", "RED"), ("EventID", "1"), ("level", "unknown"), ("color", "yellow")]
    assert level_from(parameters, "", "", "Extreme") == "yellow"
    assert level_from([("EventID", "1")], "", "", "Extreme") == "red"


@pytest.mark.parametrize(
    ("severity", "level"),
    [
        ("Extreme", "red"),
        ("Severe", "orange"),
        ("Moderate", "yellow"),
        ("Minor", "blue"),
        ("Unknown", "blue"),
        (None, "blue"),
        ("", "blue"),
        ("severe", "orange"),
    ],
)
def test_severity_is_the_fallback(severity: str | None, level: str) -> None:
    assert level_from([], "Flood", "Flood Warning", severity) == level


def test_headline_colour_wins_over_severity() -> None:
    assert level_from([], "暴雨", "暴雨红色预警", "Moderate") == "red"
    assert level_from([], "暴雨红色预警", "", "Minor") == "red"


def test_parameter_wins_over_headline() -> None:
    assert level_from([("预警级别", "蓝色")], "暴雨", "暴雨红色预警", "Extreme") == "blue"


def test_severity_given_as_a_colour_wins_over_headline() -> None:
    assert level_from([], "暴雨", "暴雨黄色预警", "Red") == "red"


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("青溪县气象台发布暴雨红色预警信号", "red"),
        ("青溪县防汛抗旱指挥部启动防汛Ⅲ级应急响应", "yellow"),
        ("新郑市气象台发布大雾黄色预警[III级/较重]", "yellow"),
        ("启动一级响应", "red"),
        ("将暴雨黄色预警信号升级为橙色", "orange"),
        ("将暴雨橙色预警信号降级为黄色预警信号", "yellow"),
        ("发布暴雨蓝色预警信号和雷电黄色预警信号", "yellow"),
        ("Homeland Security Sets Code ORANGE", "orange"),
        ("Gale Yellow Warning", "yellow"),
        ("Red Flag Warning", None),
        ("Amber Alert in Los Angeles County", None),
        ("Blue Alert for Wayne County", None),
        ("预计阵风十一级", None),
        ("6级以上大风", None),
        ("VI级", None),
        ("暴雨", None),
    ],
)
def test_level_in_text(text: str, level: str | None) -> None:
    assert level_in_text(text) == level


def test_bare_numbers_and_single_characters_count_only_as_whole_parameter_values() -> None:
    assert level_from([], "1", "红", "Minor") == "blue"
    assert level_from([("EventID", "1")], "", "", "Minor") == "blue"
    assert colour_of("1") is None
    assert colour_of("红") == "red"


# ---------------------------------------------------------------------------------------------
# Hardened XML

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<alert>&lol9;</alert>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE alert SYSTEM "http://attacker.example/cap.dtd">
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>"""


@pytest.mark.parametrize("body", [XXE, BILLION_LAUGHS, EXTERNAL_DTD], ids=["xxe", "lol", "dtd"])
def test_dtd_and_entities_are_refused(body: bytes) -> None:
    error = rejected(parse_cap_xml, body)
    assert error.status == 400
    assert "DTD" in error.message
    assert "entity" in error.message
    assert "passwd" not in error.message


def test_malformed_xml() -> None:
    error = rejected(parse_cap_xml, b"<alert><identifier>x</alert>")
    assert error.status == 400
    assert error.message.startswith("malformed XML: mismatched tag")
    assert rejected(parse_cap_xml, b"").message.startswith("malformed XML: ")


def test_undeclared_entity_is_malformed() -> None:
    error = rejected(
        parse_cap_xml, base("<identifier>44179941600000_20260701080000_0", "<identifier>&x;")
    )
    assert error.message.startswith("malformed XML: undefined entity")


def test_root_must_be_alert() -> None:
    error = rejected(parse_cap_xml, b'<feed xmlns="http://www.w3.org/2005/Atom"/>')
    assert error.status == 400
    assert "<feed>" in error.message
    assert "<alert>" in error.message


def test_unknown_namespace_is_refused() -> None:
    body = base("urn:oasis:names:tc:emergency:cap:1.2", "urn:example:not-cap")
    assert "urn:example:not-cap" in rejected(parse_cap_xml, body).message


def test_utf8_bom_is_accepted() -> None:
    warning = parse_cap_xml(b"\xef\xbb\xbf" + base())
    assert warning.event == "暴雨"


def test_gbk_declared_body() -> None:
    body = BASE.replace('encoding="UTF-8"', 'encoding="GBK"').encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")  # really GBK bytes
    warning = parse_cap_xml(body)
    assert warning.headline == "青溪县气象台发布暴雨黄色预警信号"
    assert warning.areas[0].description == "青溪县城关镇"
    assert warning.level == "yellow"


def test_gb2312_declared_body_with_gbk_only_characters() -> None:
    text = BASE.replace('encoding="UTF-8"', 'encoding="GB2312"')
    text = text.replace("50毫米以上。", "50毫米以上，请留意堃溪水位。")
    with pytest.raises(UnicodeEncodeError):
        text.encode("gb2312")  # 堃 is in GBK, not in GB2312
    warning = parse_cap_xml(text.encode("gbk"))
    assert warning.description.endswith("堃溪水位。")


def test_body_not_in_its_declared_encoding() -> None:
    body = BASE.replace('encoding="UTF-8"', 'encoding="GBK"').encode("utf-8") + b"\xff\xff"
    assert "not valid GBK" in rejected(parse_cap_xml, body).message


def test_unknown_declared_encoding() -> None:
    body = base('encoding="UTF-8"', 'encoding="x-no-such-charset"')
    assert rejected(parse_cap_xml, body).message == "unsupported XML encoding 'x-no-such-charset'"


def test_latin1_declared_body() -> None:
    text = BASE.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
    text = text.replace("<event>暴雨</event>", "<event>Crue éclair</event>")
    text = "".join(char for char in text if ord(char) < 256)  # drops the Chinese text
    warning = parse_cap_xml(text.encode("latin-1"))
    assert warning.event == "Crue éclair"


# ---------------------------------------------------------------------------------------------
# CAP rules


@pytest.mark.parametrize(
    ("element", "text"),
    [
        ("identifier", "44179941600000_20260701080000_0"),
        ("sender", "441799000000@cma.gov.cn"),
        ("sent", "2026-07-01T08:00:00+08:00"),
        ("status", "Actual"),
        ("msgType", "Alert"),
    ],
)
def test_missing_required_element(element: str, text: str) -> None:
    error = rejected(parse_cap_xml, base(f"<{element}>{text}</{element}>", ""))
    assert error.status == 400
    assert error.message == f"missing <{element}>"
    blank = rejected(
        parse_cap_xml, base(f"<{element}>{text}</{element}>", f"<{element}> </{element}>")
    )
    assert blank.message == f"missing <{element}>"


def test_several_missing_elements_are_all_named() -> None:
    body = base(
        "<identifier>44179941600000_20260701080000_0</identifier>\n"
        "  <sender>441799000000@cma.gov.cn</sender>"
    )
    assert rejected(parse_cap_xml, body).message == "missing <identifier>, <sender>"


def info_removed() -> str:
    start, end = BASE.index("<info>"), BASE.index("</info>") + len("</info>")
    return BASE[:start] + BASE[end:]


def test_missing_info() -> None:
    assert rejected(parse_cap_xml, info_removed().encode()).message == "missing <info>"


def test_missing_event() -> None:
    assert rejected(parse_cap_xml, base("<event>暴雨</event>", "")).message == "missing <event>"


def test_alert_and_update_need_an_area() -> None:
    start, end = BASE.index("<area>"), BASE.index("</area>") + len("</area>")
    body = BASE[:start] + BASE[end:]
    assert rejected(parse_cap_xml, body.encode()).message == "missing <area>"
    update = body.replace("<msgType>Alert</msgType>", "<msgType>Update</msgType>")
    assert rejected(parse_cap_xml, update.encode()).message == "missing <area>"
    cancel = body.replace("<msgType>Alert</msgType>", "<msgType>Cancel</msgType>")
    assert parse_cap_xml(cancel.encode()).areas == ()


def test_cancel_without_info_takes_the_defaults() -> None:
    body = info_removed().replace("<msgType>Alert</msgType>", "<msgType>Cancel</msgType>")
    body = body.replace(
        "<scope>Public</scope>",
        "<scope>Public</scope><references>441799000000@cma.gov.cn,A1,2026-07-01T07:00:00+08:00"
        "</references>",
    )
    warning = parse_cap_xml(body.encode())
    assert warning.msg_type == "Cancel"
    assert warning.event == ""
    assert warning.headline == CANCEL_HEADLINE == "解除预警"
    assert warning.level == "blue"
    assert warning.areas == ()
    assert warning.parameters == ()
    assert warning.severity is None
    assert warning.references == "441799000000@cma.gov.cn,A1,2026-07-01T07:00:00+08:00"


def test_ack_without_info_is_refused() -> None:
    body = info_removed().replace("<msgType>Alert</msgType>", "<msgType>Ack</msgType>")
    assert rejected(parse_cap_xml, body.encode()).message == "missing <info>"


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("<status>Actual</status>", "<status>actual</status>", "<status> 'actual'"),
        ("<status>Actual</status>", "<status>Real</status>", "<status> 'Real'"),
        ("<msgType>Alert</msgType>", "<msgType>alert</msgType>", "<msgType> 'alert'"),
        ("<msgType>Alert</msgType>", "<msgType>Warning</msgType>", "<msgType> 'Warning'"),
    ],
)
def test_status_and_msg_type_must_be_cap_values(old: str, new: str, named: str) -> None:
    error = rejected(parse_cap_xml, base(old, new))
    assert error.status == 400
    assert error.message.startswith(f"unknown {named}")


@pytest.mark.parametrize("status", ["Actual", "Exercise", "System", "Test", "Draft"])
def test_every_cap_status(status: str) -> None:
    assert (
        parse_cap_xml(base("<status>Actual</status>", f"<status>{status}</status>")).status
        == status
    )


def test_date_without_offset() -> None:
    error = rejected(parse_cap_xml, base("2026-07-01T08:00:00+08:00", "2026-07-01T08:00:00"))
    assert error.status == 400
    assert error.message.startswith("<sent> has no UTC offset")


def test_unparsable_dates_name_their_field() -> None:
    body = base("<senderName>", "<expires>tomorrow</expires><senderName>")
    assert (
        rejected(parse_cap_xml, body).message
        == "<expires> is not an ISO 8601 date-time: 'tomorrow'"
    )
    body = base("<senderName>", "<onset>2026-07-01</onset><senderName>")
    assert rejected(parse_cap_xml, body).message.startswith("<onset> has no UTC offset")


def test_zulu_offset() -> None:
    warning = parse_cap_xml(base("2026-07-01T08:00:00+08:00", "2026-07-01T00:00:00Z"))
    assert warning.sent == datetime(2026, 7, 1, 8, 0, tzinfo=CST)


def test_text_is_stripped_and_headline_defaults() -> None:
    body = BASE.replace("<headline>青溪县气象台发布暴雨黄色预警信号</headline>", "")
    body = body.replace("<event>暴雨</event>", "<event>\n   暴雨  </event>")
    warning = parse_cap_xml(body.encode())
    assert warning.event == "暴雨"
    assert warning.level == "yellow"  # Moderate
    assert warning.headline == "暴雨黄色预警"


def test_unnamespaced_alert() -> None:
    body = base(' xmlns="urn:oasis:names:tc:emergency:cap:1.2"', "")
    warning = parse_cap_xml(body)
    assert warning.identifier == "44179941600000_20260701080000_0"
    assert warning.geocode_values() == ["441799100000"]


def test_cap11_namespace_and_prefixed_elements() -> None:
    body = (
        BASE.replace(
            'xmlns="urn:oasis:names:tc:emergency:cap:1.2"',
            'xmlns:cap="urn:oasis:names:tc:emergency:cap:1.1"',
        )
        .replace("<", "<cap:")
        .replace("<cap:/", "</cap:")
        .replace("<cap:?xml", "<?xml")
    )
    warning = parse_cap_xml(body.encode())
    assert warning.headline == "青溪县气象台发布暴雨黄色预警信号"


def test_cap10_bare_geocodes() -> None:
    body = BASE.replace("urn:oasis:names:tc:emergency:cap:1.2", "http://www.incident.com/cap/1.0")
    body = body.replace(
        "<geocode><valueName>行政区划代码</valueName><value>441799100000</value></geocode>",
        "<geocode>FIPS6=006109</geocode><geocode>441799101000</geocode><geocode/>",
    )
    warning = parse_cap_xml(body.encode())
    assert warning.areas[0].geocodes == (("FIPS6", "006109"), ("", "441799101000"))


def test_utf16_body() -> None:
    body = BASE.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    assert parse_cap_xml(body).headline == "青溪县气象台发布暴雨黄色预警信号"


def test_severity_written_as_a_colour() -> None:
    # The Chinese profile may carry the signal colour in <severity>; it beats the headline.
    warning = parse_cap_xml(base("<severity>Moderate</severity>", "<severity>Orange</severity>"))
    assert warning.level == "orange"
    assert warning.severity == "Severe"


def test_parameter_pairs() -> None:
    parameters = (
        "<parameter><valueName>预警级别</valueName><value> 红色 </value></parameter>"
        "<parameter><valueName>noValue</valueName></parameter>"
        "<parameter>HSAS=ORANGE</parameter>"
        "<area>"
    )
    warning = parse_cap_xml(base("<area>", parameters))
    assert warning.parameters == (("预警级别", "红色"), ("noValue", ""), ("HSAS", "ORANGE"))
    assert warning.level == "red"


def test_foreign_elements_are_ignored() -> None:
    body = base(
        "</info>",
        '</info><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
        "<ds:SignatureValue>AAAA</ds:SignatureValue></ds:Signature>"
        '<x:identifier xmlns:x="urn:example">other</x:identifier>',
    )
    warning = parse_cap_xml(body)
    assert warning.identifier == "44179941600000_20260701080000_0"


def test_geocode_values_are_de_duplicated_across_areas() -> None:
    second = (
        "<area><areaDesc>城关镇北门社区</areaDesc>"
        "<geocode><valueName>行政区划代码</valueName><value>441799100001</value></geocode>"
        "<geocode><valueName>行政区划代码</valueName><value>441799100000</value></geocode>"
        "<circle>21.85,111.98 5</circle></area></info>"
    )
    warning = parse_cap_xml(base("</info>", second))
    assert len(warning.areas) == 2
    assert warning.areas[1].circles == ("21.85,111.98 5",)
    assert warning.geocode_values() == ["441799100000", "441799100001"]


def info_block(language: str | None, event: str) -> str:
    language_element = f"<language>{language}</language>" if language else ""
    return (
        f"<info>{language_element}<event>{event}</event><headline>{event}预警</headline>"
        "<area><areaDesc>青溪县</areaDesc></area></info>"
    )


@pytest.mark.parametrize(
    ("languages", "chosen"),
    [
        (["en-US", "zh-CN"], 1),
        (["en-US", "zh-TW", "zh-cn"], 2),
        (["en-US", "zh-TW"], 1),
        (["en-US", "zh"], 1),
        ([None, "es-US"], 0),
        (["fr-CA", "en-US"], 0),
    ],
)
def test_info_choice(languages: list[str | None], chosen: int) -> None:
    infos = "".join(
        info_block(language, f"event{index}") for index, language in enumerate(languages)
    )
    start, end = BASE.index("<info>"), BASE.index("</info>") + len("</info>")
    warning = parse_cap_xml((BASE[:start] + infos + BASE[end:]).encode())
    assert warning.event == f"event{chosen}"
    assert warning.language == (languages[chosen] or "en-US")


# ---------------------------------------------------------------------------------------------
# JSON

JSON_WARNING: dict[str, Any] = {
    "identifier": "QX-2026-0701-001",
    "sender": "441799000000@cma.gov.cn",
    "sent": "2026-07-01T08:00:00+08:00",
    "status": "Actual",
    "msgType": "Alert",
    "event": "暴雨",
    "severity": "Severe",
    "urgency": "Immediate",
    "certainty": "Likely",
    "headline": "  青溪县气象台发布暴雨橙色预警信号 ",
    "description": "预计3小时内龙潭镇降雨量将达50毫米以上。",
    "instruction": "停止户外作业。",
    "senderName": "青溪县气象台",
    "onset": "2026-07-01T09:00:00+08:00",
    "expires": "2026-07-02T08:00:00+08:00",
    "parameters": [{"valueName": "预警级别", "value": "橙色"}],
    "areas": [
        {
            "areaDesc": "龙潭镇",
            "geocodes": ["441799101000", {"valueName": "行政区划代码", "value": "441799101201"}],
            "polygons": ["21.80,111.90 21.95,111.95 21.90,112.10 21.80,111.90"],
            "circles": ["21.85,111.98 5"],
        }
    ],
}


def json_body(**changes: Any) -> bytes:
    document = {**JSON_WARNING, **changes}
    return json.dumps({key: value for key, value in document.items() if value is not None}).encode()


def test_json_happy_path() -> None:
    warning = parse_warning_json(json_body())
    assert warning.source_format == "json"
    assert warning.identifier == "QX-2026-0701-001"
    assert warning.sent == datetime(2026, 7, 1, 8, 0, tzinfo=CST)
    assert warning.scope == "Public"
    assert warning.language == "zh-CN"
    assert warning.level == "orange"
    assert warning.headline == "青溪县气象台发布暴雨橙色预警信号"
    assert warning.onset == datetime(2026, 7, 1, 9, 0, tzinfo=CST)
    assert warning.expires == datetime(2026, 7, 2, 8, 0, tzinfo=CST)
    assert warning.parameters == (("预警级别", "橙色"),)
    assert warning.areas == (
        Area(
            description="龙潭镇",
            geocodes=(("", "441799101000"), ("行政区划代码", "441799101201")),
            polygons=("21.80,111.90 21.95,111.95 21.90,112.10 21.80,111.90",),
            circles=("21.85,111.98 5",),
        ),
    )
    assert warning.geocode_values() == ["441799101000", "441799101201"]


def test_json_minimal_body_and_defaults() -> None:
    body = {
        key: JSON_WARNING[key]
        for key in ("identifier", "sender", "sent", "status", "msgType", "event", "areas")
    }
    warning = parse_warning_json(json.dumps(body).encode())
    assert warning.level == "blue"
    assert warning.headline == "暴雨蓝色预警"
    assert warning.severity is None
    assert warning.references is None
    assert warning.description == ""


@pytest.mark.parametrize(
    ("spelling", "level"), [("red", "red"), ("红色", "red"), ("Ⅲ级", "yellow"), ("4", "blue")]
)
def test_json_level_overrides_the_mapping(spelling: str, level: str) -> None:
    warning = parse_warning_json(json_body(level=spelling, headline=None))
    assert warning.level == level
    assert warning.headline == f"暴雨{LEVELS[level]}预警"


def test_json_unknown_level() -> None:
    error = rejected(parse_warning_json, json_body(level="purple"))
    assert error.status == 422
    assert error.message.startswith("invalid warning: level: unknown level 'purple'")


def test_json_unknown_field_is_named() -> None:
    error = rejected(parse_warning_json, json_body(msgtype="Alert"))
    assert error.status == 422
    assert "msgtype: Extra inputs are not permitted" in error.message
    nested = rejected(parse_warning_json, json_body(areas=[{"areaDesc": "x", "geocode": ["1"]}]))
    assert "areas.0.geocode: Extra inputs are not permitted" in nested.message


def test_json_missing_identifier() -> None:
    body = {key: value for key, value in JSON_WARNING.items() if key != "identifier"}
    error = rejected(parse_warning_json, json.dumps(body).encode())
    assert error.status == 422
    assert "identifier: Field required" in error.message


def test_json_lists_every_problem() -> None:
    error = rejected(parse_warning_json, json_body(identifier="  ", sent=20260701, colour="red"))
    assert error.status == 422
    assert "identifier: String should have at least 1 character" in error.message
    assert "sent: Input should be a valid string" in error.message
    assert "colour: Extra inputs are not permitted" in error.message
    assert error.message.count("; ") == 2


def test_json_must_be_an_object() -> None:
    error = rejected(parse_warning_json, b"[1, 2]")
    assert error.status == 422


@pytest.mark.parametrize(
    ("body", "start"),
    [
        (b'{"identifier": ', "invalid JSON: "),
        (b"\xff\xfe{}", "body is not UTF-8: "),
        ('{"identifier": "暴雨"}'.encode("gbk"), "body is not UTF-8: "),
    ],
)
def test_json_syntax_errors_are_400(body: bytes, start: str) -> None:
    error = rejected(parse_warning_json, body)
    assert error.status == 400
    assert error.message.startswith(start)


def test_json_bom_is_accepted() -> None:
    assert parse_warning_json(b"\xef\xbb\xbf" + json_body()).identifier == "QX-2026-0701-001"


def test_json_date_without_offset() -> None:
    error = rejected(parse_warning_json, json_body(sent="2026-07-01T08:00:00"))
    assert error.status == 400
    assert error.message.startswith("sent has no UTC offset")
    assert rejected(parse_warning_json, json_body(expires="soon")).message.startswith(
        "expires is not"
    )


def test_json_cap_rules() -> None:
    assert rejected(parse_warning_json, json_body(status="actual")).message.startswith(
        "unknown status 'actual'"
    )
    assert rejected(parse_warning_json, json_body(areas=[])).message == "missing areas"
    assert rejected(parse_warning_json, json_body(event="")).message == "missing event"


def test_json_cancel_without_event() -> None:
    body = json_body(
        msgType="Cancel",
        event="",
        headline="",
        areas=[],
        severity=None,
        parameters=[],
        references="441799000000@cma.gov.cn,QX-2026-0701-001,2026-07-01T08:00:00+08:00",
    )
    warning = parse_warning_json(body)
    assert warning.headline == "解除预警"
    assert warning.level == "blue"
    assert (
        warning.references == "441799000000@cma.gov.cn,QX-2026-0701-001,2026-07-01T08:00:00+08:00"
    )
    named = parse_warning_json(json_body(msgType="Cancel", headline="", parameters=[]))
    assert named.headline == "解除暴雨橙色预警"


def test_json_severity_as_colour_is_mapped_to_cap() -> None:
    warning = parse_warning_json(json_body(severity="Red", parameters=[], headline="暴雨预警"))
    assert warning.level == "red"
    assert warning.severity == "Extreme"


def test_json_and_xml_agree() -> None:
    xml = parse_cap_xml(base())
    document = {
        "identifier": "44179941600000_20260701080000_0",
        "sender": "441799000000@cma.gov.cn",
        "sent": "2026-07-01T08:00:00+08:00",
        "status": "Actual",
        "msgType": "Alert",
        "event": "暴雨",
        "urgency": "Immediate",
        "severity": "Moderate",
        "certainty": "Likely",
        "senderName": "青溪县气象台",
        "headline": "青溪县气象台发布暴雨黄色预警信号",
        "description": "预计6小时内城关镇降雨量将达50毫米以上。",
        "areas": [
            {
                "areaDesc": "青溪县城关镇",
                "geocodes": [{"valueName": "行政区划代码", "value": "441799100000"}],
            }
        ],
    }
    from_json = parse_warning_json(json.dumps(document).encode())
    assert from_json == ParsedWarning(**{**xml.__dict__, "source_format": "json"})


def test_warning_in_schema() -> None:
    schema = WarningIn.model_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"identifier", "sender", "sent", "status", "msgType"}
    assert schema["properties"]["status"]["enum"] == [
        "Actual",
        "Exercise",
        "System",
        "Test",
        "Draft",
    ]
    assert "Cancel" in schema["properties"]["msgType"]["enum"]


# ---------------------------------------------------------------------------------------------
# Choosing the format


@pytest.mark.parametrize(
    "content_type",
    ["application/xml", "text/xml; charset=utf-8", "application/cap+xml", "APPLICATION/XML"],
)
def test_xml_content_types(content_type: str) -> None:
    assert parse_warning(base(), content_type).source_format == "cap"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=UTF-8"])
def test_json_content_types(content_type: str) -> None:
    assert parse_warning(json_body(), content_type).source_format == "json"


@pytest.mark.parametrize("content_type", [None, "", "application/octet-stream", "text/plain"])
def test_sniffing(content_type: str | None) -> None:
    assert parse_warning(b"\xef\xbb\xbf\n  " + base(), content_type).source_format == "cap"
    assert parse_warning(b" \r\n" + json_body(), content_type).source_format == "json"


def test_declared_type_is_trusted_over_the_body() -> None:
    error = rejected(parse_warning, json_body(), "application/xml")
    assert error.status == 400
    assert error.message.startswith("malformed XML")


def test_unsupported_content_type() -> None:
    error = rejected(parse_warning, base(), "image/png")
    assert error.status == 415
    assert "image/png" in error.message


def test_unrecognisable_body() -> None:
    assert rejected(parse_warning, b"alert!", None).status == 415
    assert rejected(parse_warning, b"  ", None).status == 400


def test_rejection_defaults() -> None:
    error = WarningRejected("missing <identifier>")
    assert (error.message, error.status, str(error)) == (
        "missing <identifier>",
        400,
        "missing <identifier>",
    )
