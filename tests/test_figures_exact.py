"""The warning figures equal a plain recount of the rows.

The summary, the region tree and the funnel are summed from counter rows that triggers
add as calls, attempts and answers change (`dispatcher.counters`), and the curve is
grouped per second in SQL; these tests recount the same calls, attempts and answers one
by one and compare, on both back ends: after a scenario, after compaction, and after
many writers and compactions ran at once. The curve draws one step per column (0.1 px).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy import text as sql
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.counters import compact_added, compact_counters
from dispatcher.figures import answer_curve, funnel
from dispatcher.models import (
    Answer,
    Attempt,
    Call,
    CallCount,
    CurveCount,
    FunnelCount,
    Region,
    Warning,
    table_of,
)
from dispatcher.summary import EVERYTHING, region_tree, warning_summary
from dispatcher.svg import CURVE_HEIGHT, CURVE_PAD, CURVE_WIDTH, answer_curve_svg
from dispatcher.vocabulary import AttemptStatus, CallState, Meaning
from tests.scenario import County, county  # noqa: F401  (fixture)


async def test_summary_and_tree_equal_a_recount(county: County) -> None:  # noqa: F811
    warning = await county.warn("EXACT")
    await county.work()
    for who, text in (("b1", "求助"), ("b2", "已转移7人"), ("a1", "4 5"), ("a3", "1")):
        await county.text(who, text)
        county.clock.advance(minutes=1)
    await county.work()
    async with county.runtime.db.sessions() as session:
        rows = (
            await session.execute(
                select(Call, Region.path)
                .join(Region, Region.id == Call.region_id)
                .where(Call.warning_id == warning)
            )
        ).all()
    calls = [call for call, _ in rows]
    summary = (await county.client.get(f"/api/v1/warnings/{warning}")).json()
    states = Counter(c.state for c in calls)
    assert summary["calls"]["total"] == len(calls) == 11
    assert summary["calls"]["answered"] == states["answered"] == 4
    assert summary["calls"]["pending"] == states["pending"] + states["calling"]
    assert summary["calls"]["help"] == 1
    assert summary["statuses"] == dict(Counter(c.answer_meaning for c in calls if c.answer_meaning))
    assert summary["evacuated"] == sum(c.evacuated or 0 for c in calls) == 12
    tree = {r["code"]: r for r in summary["regions"]}
    for code, figures in tree.items():
        under = [call for call, path in rows if f"/{code}/" in path]
        assert figures["calls"] == len(under)
        assert figures["answered"] == sum(c.state == "answered" for c in under)
        assert figures["help"] == sum(c.answer_meaning == "help" for c in under)
        assert figures["evacuated"] == sum(c.evacuated or 0 for c in under)
    assert set(tree) == {code for _, path in rows for code in path.strip("/").split("/")}
    # the page shows the same figures and the answers credited to their channel
    page = (await county.client.get(f"/warnings/{warning}")).text
    assert "赵五" in page and "已转移7人" in page

    async with county.runtime.db.sessions() as session:
        attempts = list(
            await session.scalars(
                select(Attempt).where(Attempt.warning_id == warning, Attempt.purpose == "call")
            )
        )
        root = await session.scalar(select(Region).where(Region.code == "441799000000"))
        assert root is not None
        whole = replace(EVERYTHING, region_path=root.path, region_code=root.code)
        unscoped = await funnel(session, warning, EVERYTHING)
        scoped = await funnel(session, warning, whole)
        total, points = await answer_curve(session, await session.get(Warning, warning), whole)
    # unscoped, the funnel finds a call's attempts by warning; scoped, through the calls
    assert unscoped == scoped
    by_channel = Counter((a.channel, a.provider or "—") for a in attempts)
    assert {(r["channel"], r["provider"]): r["attempts"] for r in unscoped} == dict(by_channel)
    assert sum(r["answered"] for r in unscoped) == 4
    assert total == 11 and len(points) == 4 and points[-1][1] == 4 / 11
    await _assert_figures_recounted(county, warning)


SENT_STATUSES = {AttemptStatus.SENT, AttemptStatus.NO_ANSWER, AttemptStatus.BUSY}


async def _recount(session: AsyncSession, warning_id: int) -> dict[str, Any]:
    """Every figure of the warning, counted row by row in Python."""
    warning = await session.get(Warning, warning_id)
    assert warning is not None
    calls = list(await session.scalars(select(Call).where(Call.warning_id == warning_id)))
    ids = {c.id for c in calls}
    attempts = {
        a.id: a
        for a in await session.scalars(select(Attempt).where(Attempt.call_id.in_(ids)))
        if a.purpose == "call"
    }
    funnel_rows: dict[tuple[str, str], Counter[str]] = {}
    for a in attempts.values():
        row = funnel_rows.setdefault((a.channel, a.provider or "—"), Counter())
        row["attempts"] += 1
        row["sent"] += a.status in SENT_STATUSES or a.status == AttemptStatus.DELIVERED
        row["delivered"] += a.status == AttemptStatus.DELIVERED
    first: dict[int, Answer] = {}
    for answer in await session.scalars(
        select(Answer).where(Answer.call_id.in_(ids)).order_by(Answer.id)
    ):
        first.setdefault(answer.call_id, answer)
    for answer in first.values():
        attempt = attempts.get(answer.attempt_id or 0) or await session.get(
            Attempt, answer.attempt_id or 0
        )
        key = (
            (answer.channel, answer.provider)
            if attempt is None
            else (
                attempt.channel,
                attempt.provider,
            )
        )
        funnel_rows.setdefault((key[0], key[1] or "—"), Counter())["answered"] += 1
    states = Counter("pending" if c.state == CallState.CALLING else c.state for c in calls)
    answered_at = sorted(c.answered_at for c in calls if c.answered_at is not None)
    return {
        "warning": warning,
        "states": states,
        "meanings": Counter(c.answer_meaning for c in calls if c.answer_meaning),
        "evacuated": sum(c.evacuated or 0 for c in calls),
        "funnel": {
            key: {f: row[f] for f in ("attempts", "sent", "delivered", "answered")}
            for key, row in funnel_rows.items()
        },
        "answered_at": answered_at,
        "calls": calls,
    }


async def _assert_figures_recounted(county: County, warning_id: int) -> None:  # noqa: F811
    async with county.runtime.db.sessions() as session:
        # a township's supervisor sees its subtree's curve, from that region's rows
        town = await session.scalar(select(Region).where(Region.code == "441799100000"))
        assert town is not None
        scope = replace(EVERYTHING, region_path=town.path, region_code=town.code)
        town_total, town_points = await answer_curve(
            session, await session.get(Warning, warning_id), scope
        )
        counted = await _recount(session, warning_id)
        warning = counted["warning"]
        summary = await warning_summary(session, warning)
        tree = await region_tree(session, warning_id)
        funnel_rows = await funnel(session, warning_id, EVERYTHING)
        total, points = await answer_curve(session, warning, EVERYTHING)
        paths = dict((await session.execute(select(Region.id, Region.path))).all())
    states = counted["states"]
    calls = summary["calls"]
    assert calls["total"] == total == len(counted["calls"])
    assert calls["answered"] == states["answered"]
    assert calls["pending"] == states["pending"]
    assert calls["escalated"] == states["escalated"]
    assert calls["unanswered"] == states["unanswered"]
    assert summary["statuses"] == dict(counted["meanings"])
    assert summary["evacuated"] == counted["evacuated"]
    for row in tree:
        under = [c for c in counted["calls"] if f"/{row['code']}/" in paths[c.region_id]]
        assert row["calls"] == len(under)
        assert row["answered"] == sum(c.state == "answered" for c in under)
        assert row["help"] == sum(c.answer_meaning == "help" for c in under)
        assert row["evacuated"] == sum(c.evacuated or 0 for c in under)
    assert {
        (r["channel"], r["provider"]): {
            f: r[f] for f in ("attempts", "sent", "delivered", "answered")
        }
        for r in funnel_rows
    } == counted["funnel"]
    # a point at the end of each second in which calls were answered, with the share
    # of calls answered by then, exactly
    answered_at = counted["answered_at"]
    seconds = sorted({at.replace(microsecond=0) for at in answered_at})
    assert len(points) == len(seconds)
    for (minutes, share), second in zip(points, seconds, strict=True):
        end = second + timedelta(seconds=1)
        assert abs(minutes - max(0.0, (end - warning.received_at).total_seconds() / 60)) < 1e-9
        assert share == sum(at < end for at in answered_at) / total
    town_calls = [c for c in counted["calls"] if paths[c.region_id].startswith(town.path)]
    assert town_total == len(town_calls)
    for minutes, share in town_points:
        # a point stands at the end of a whole second
        end = warning.received_at + timedelta(seconds=round(minutes * 60, 3))
        end = end.replace(microsecond=0) + timedelta(seconds=end.microsecond >= 500_000)
        by_then = [c for c in town_calls if c.answered_at and c.answered_at < end]
        assert share == len(by_then) / town_total


async def _compact_all(county: County, warning_id: int) -> None:  # noqa: F811
    for table in ("call_counts", "funnel_counts", "curve_counts"):
        async with county.runtime.db.transaction() as session:
            await compact_counters(session, table, warning_id)


async def _counter_rows(county: County) -> int:  # noqa: F811
    async with county.runtime.db.sessions() as session:
        calls = await session.scalar(select(func.count()).select_from(CallCount))
        funnel_rows = await session.scalar(select(func.count()).select_from(FunnelCount))
        curve = await session.scalar(select(func.count()).select_from(CurveCount))
        return int(calls or 0) + int(funnel_rows or 0) + int(curve or 0)


async def test_compacted_counters_keep_the_figures(county: County) -> None:  # noqa: F811
    warning = await county.warn("COMPACT")
    await county.work()
    for who, text in (("b1", "求助"), ("b1", "1"), ("a1", "4 5"), ("a1", "4 9"), ("h1", "1")):
        await county.text(who, text)
        county.clock.advance(seconds=20)
    await county.work()
    await county.at(30)
    await _assert_figures_recounted(county, warning)
    before = await _counter_rows(county)
    await _compact_all(county, warning)
    assert await _counter_rows(county) < before
    await _assert_figures_recounted(county, warning)
    # a second compaction has nothing left to merge, and the worker's finds nothing new
    rows = await _counter_rows(county)
    await _compact_all(county, warning)
    assert await _counter_rows(county) == rows
    marks: dict[str, int] = {}
    await compact_added(county.runtime.db, marks)
    assert await compact_added(county.runtime.db, marks) == 0
    await _assert_figures_recounted(county, warning)


async def test_counters_stay_exact_with_concurrent_writers(county: County) -> None:  # noqa: F811
    """Answers by SMS, delivery reports and ladder-like state changes, each in its own
    transaction, while compactions run: the figures still equal a recount."""
    warning = await county.warn("BUSY")
    await county.work()
    async with county.runtime.db.sessions() as session:
        call_ids = list(await session.scalars(select(Call.id).where(Call.warning_id == warning)))
        attempt_ids = list(
            await session.scalars(select(Attempt.id).where(Attempt.warning_id == warning))
        )
    shuffled = random.Random(8)
    statuses = [
        AttemptStatus.DELIVERED,
        AttemptStatus.FAILED,
        AttemptStatus.BUSY,
        AttemptStatus.NO_ANSWER,
        AttemptStatus.SENT,
    ]

    async def report(attempt_id: int) -> None:
        for status in shuffled.sample(statuses, 3):
            async with county.runtime.db.transaction() as session:
                await session.execute(
                    update(Attempt)
                    .where(Attempt.id == attempt_id)
                    .values(status=status, provider=shuffled.choice(["simulated", "other"]))
                )

    async def step(call_id: int) -> None:
        for state in (CallState.ESCALATED, CallState.UNANSWERED):
            async with county.runtime.db.transaction() as session:
                await session.execute(
                    update(Call)
                    .where(Call.id == call_id, Call.state != CallState.ANSWERED)
                    .values(state=state)
                )

    async def compact() -> None:
        for _ in range(6):
            await _compact_all(county, warning)
            await asyncio.sleep(0)

    answers = [
        county.text(who, text)
        for who, text in (("b1", "1"), ("b2", "已转移3人"), ("a1", "求助"), ("a3", "1"))
    ]
    await asyncio.gather(
        *answers,
        *(report(a) for a in attempt_ids),
        *(step(c) for c in call_ids),
        compact(),
        compact(),
    )
    await _assert_figures_recounted(county, warning)
    await _compact_all(county, warning)
    await _assert_figures_recounted(county, warning)


async def test_first_answer_is_found_by_one_probe_however_many_answers(
    county: County,  # noqa: F811
) -> None:
    """The answers trigger asks each new answer's call for its first answer (`min(id)`).
    With statistics showing many answers per call, that must still be one probe of the
    call's answers in id order, not a walk over every answer from the lowest id (0022)."""
    if county.runtime.db.is_sqlite:
        pytest.skip("a PostgreSQL plan: SQLite's row trigger looks up one call per row")
    warning = await county.warn("PLAN")
    calls = list((await county.calls(warning)).values())
    now = county.clock.now()
    rows = [
        {
            "call_id": call.id,
            "responder_id": call.responder_id,
            "channel": "sms",
            "raw": "3",
            "meaning": Meaning.ON_DUTY,
            "at": now,
        }
        for _ in range(300)
        for call in calls
    ]
    async with county.runtime.db.transaction() as session:
        await session.execute(insert(table_of(Answer)), rows)
    engine = county.runtime.db.engine.execution_options(isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(sql("ANALYZE answers"))
        plan = await connection.scalar(
            sql("EXPLAIN (FORMAT JSON) SELECT min(e.id) FROM answers e WHERE e.call_id = :c"),
            {"c": calls[-1].id},
        )
    plan_text = plan if isinstance(plan, str) else json.dumps(plan)
    assert "ix_answers_call_first" in plan_text
    assert "answers_pkey" not in plan_text


def test_curve_draws_one_step_per_column() -> None:
    total = 1000
    # 999 answers within the first second, then the last one at five minutes
    points = [(i / 60_000, i / total) for i in range(1, 1000)] + [(5.0, 1.0)]
    svg = str(answer_curve_svg(points, total))
    path = svg[svg.index(' d="') + 4 :]
    steps = path[: path.index('"')].split(" ")[1:]
    # on a 10-minute axis the first second is under one pixel: ten columns of 0.1 px
    assert 2 < len(steps) <= 12
    # each column ends at the last share reached in it, where a step per answer ends too
    plot_w, plot_h = CURVE_WIDTH - 2 * CURVE_PAD, CURVE_HEIGHT - 2 * CURVE_PAD
    ends: dict[str, str] = {}
    for minutes, share in points:
        x = f"{CURVE_PAD + plot_w * minutes / 10:.1f}"
        ends[x] = f"{CURVE_HEIGHT - CURVE_PAD - plot_h * share:.1f}"
    assert steps == [f"H{x}V{y}" for x, y in ends.items()]
