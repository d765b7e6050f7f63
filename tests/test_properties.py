"""Property-based tests: random and mutated warnings never crash, never half-store.

The parser, given any bytes, returns a warning or raises `WarningRejected` with a 4xx
status and a message. The webhook, given a signed mutation of a real warning, answers 202
or a 4xx (never a 500), and stores either the whole warning (its row, its exact bytes, its
calls, its audit event) or nothing at all.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from dispatcher.app import create_app
from dispatcher.cap import WarningRejected, parse_warning
from dispatcher.clock import ManualClock
from dispatcher.models import Attempt, AuditEvent, Call, Warning
from dispatcher.runtime import Runtime
from tests.test_cap import JSON_WARNING
from tests.test_spine_e2e import setup_directory, signed

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cap"
XML_BASES = [
    (FIXTURES / name).read_bytes()
    for name in (
        "qingxi-rainstorm-red.xml",
        "qingxi-typhoon-orange-update.xml",
        "qingxi-rainstorm-cancel.xml",
        "qingxi-hail-circle.xml",
        "qingxi-cold-wave-blue-gb2312.xml",
    )
]
JSON_BASE = json.dumps(JSON_WARNING, ensure_ascii=False).encode()
# Pieces that matter to XML, JSON, CAP and the Chinese profile.
NASTY = [
    b"<",
    b">",
    b"&",
    b"&amp;",
    b"&xx;",
    b"]]>",
    b"<![CDATA[",
    b'"',
    b"'",
    b"{",
    b"}",
    b"[",
    b",",
    b":",
    b"null",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    "红色".encode(),
    "暴雨".encode("gbk"),
    b"<!DOCTYPE a>",
    b'<!ENTITY x "y">',
    b"</info>",
    b"<info>",
    b"<area>",
    b"<polygon>91,181 0,0</polygon>",
    b"<circle>21,111 -1</circle>",
    b"<msgType>Cancel</msgType>",
    b"<status>Exercise</status>",
    b"2026-13-45T99:00:00",
    b"Z",
    b"+08:00",
    b"NaN",
    b"1e999",
    b"-0",
    b"\n",
]
PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def mutated(draw: st.DrawFn, bases: list[bytes]) -> bytes:
    """A base document with a fresh identifier and a few random edits."""
    body = draw(st.sampled_from(bases))
    identifier = draw(st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True)).encode()
    for old in (b"44179941600000_2026", b"QX-2026-0701-001"):
        body = body.replace(old, identifier + b"_", 1)
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, len(body)))
        end = min(len(body), start + draw(st.integers(0, 40)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "bytes"]))
        if kind == "delete":
            body = body[:start] + body[end:]
        elif kind == "insert":
            body = body[:start] + draw(st.sampled_from(NASTY)) + body[start:]
        elif kind == "replace":
            body = body[:start] + draw(st.sampled_from(NASTY)) + body[end:]
        elif kind == "duplicate":
            body = body[:end] + body[start:end] + body[end:]
        else:
            body = body[:start] + draw(st.binary(max_size=8)) + body[end:]
    return body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@st.composite
def json_variants(draw: st.DrawFn) -> bytes:
    """The JSON warning with some fields dropped or replaced by random JSON values."""
    document: dict[str, Any] = dict(JSON_WARNING)
    document["identifier"] = draw(st.text(min_size=1, max_size=30))
    for key in draw(st.lists(st.sampled_from(sorted(JSON_WARNING)), max_size=3)):
        if draw(st.booleans()):
            document.pop(key, None)
        else:
            document[key] = draw(json_values)
    return json.dumps(document, ensure_ascii=draw(st.booleans())).encode()


def check_parse(body: bytes, content_type: str | None) -> None:
    try:
        warning = parse_warning(body, content_type)
    except WarningRejected as exc:
        assert 400 <= exc.status < 500
        assert exc.message
        return
    assert warning.identifier and warning.sender
    assert warning.level in ("blue", "yellow", "orange", "red")


@settings(max_examples=200, deadline=None)
@given(body=mutated(XML_BASES), content_type=st.sampled_from([None, "application/cap+xml"]))
def test_parser_on_mutated_xml(body: bytes, content_type: str | None) -> None:
    check_parse(body, content_type)


@settings(max_examples=200, deadline=None)
@given(body=st.one_of(json_variants(), mutated([JSON_BASE]), st.binary(max_size=200)))
def test_parser_on_random_and_mutated_json(body: bytes) -> None:
    check_parse(body, "application/json")
    check_parse(body, None)


@pytest.fixture
async def with_directory(
    runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    await setup_directory(runtime, tmp_path)
    clock.set(datetime(2026, 6, 12, 6, 30, tzinfo=UTC))  # the red rainstorm is current
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def counts(runtime: Runtime) -> tuple[int, ...]:
    found = []
    async with runtime.db.sessions() as session:
        for model in (Warning, Call, Attempt, AuditEvent):
            found.append(int(await session.scalar(select(func.count()).select_from(model)) or 0))
    return tuple(found)


async def post_and_check(
    runtime: Runtime, clock: ManualClock, client: httpx.AsyncClient, body: bytes, kind: str
) -> None:
    clock.advance(seconds=61)  # stay under the sender's rate limit
    before = await counts(runtime)
    headers = {**signed(body, clock), "Content-Type": kind}
    response = await client.post("/api/v1/warnings", content=body, headers=headers)
    after = await counts(runtime)
    event(f"HTTP {response.status_code}")
    assert response.status_code in (202, 400, 403, 413, 415, 422), response.text
    data = response.json()
    if response.status_code != 202:
        assert data["detail"] and "field" in data
        assert after == before, "a refused warning left rows behind"
        return
    if data["duplicate"]:
        assert after == before
        return
    async with runtime.db.sessions() as session:
        warning = await session.get(Warning, data["id"])
        assert warning is not None and warning.raw_body == body
        calls = await session.scalar(
            select(func.count()).select_from(Call).where(Call.warning_id == warning.id)
        )
        received = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.warning_id == warning.id, AuditEvent.kind == "warning.received")
        )
    assert calls == data["calls"]
    assert received == 1
    assert after[0] == before[0] + 1


@PROPERTY_SETTINGS
@given(body=mutated(XML_BASES))
async def test_webhook_on_mutated_xml(
    runtime: Runtime, clock: ManualClock, with_directory: httpx.AsyncClient, body: bytes
) -> None:
    await post_and_check(runtime, clock, with_directory, body, "application/cap+xml")


@PROPERTY_SETTINGS
@given(body=st.one_of(json_variants(), mutated([JSON_BASE])))
async def test_webhook_on_random_and_mutated_json(
    runtime: Runtime, clock: ManualClock, with_directory: httpx.AsyncClient, body: bytes
) -> None:
    await post_and_check(runtime, clock, with_directory, body, "application/json")
