"""The warning figures, aggregated in the database, equal a plain recount of the rows.

The summary, the region tree and the funnel group in SQL (one pass, per region, per
channel) rather than walk every call in Python; these tests recount the same calls one
by one and compare, on both back ends. The curve draws one step per column (0.1 px).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from sqlalchemy import select

from dispatcher.figures import answer_curve, funnel
from dispatcher.models import Attempt, Call, Region, Warning
from dispatcher.summary import EVERYTHING
from dispatcher.svg import CURVE_HEIGHT, CURVE_PAD, CURVE_WIDTH, answer_curve_svg
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
