"""`jiaoying bench` at a small N: the report's shape, and every call ends answered or escalated.

Correctness only: tests do not time things, so no figure is compared with a target.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dispatcher.bench import BenchOptions, run_bench
from dispatcher.bench_world import NotABenchDatabase, clear_bench_data
from dispatcher.cli import main
from dispatcher.models import Responder
from dispatcher.runtime import Runtime
from tests.conftest import Backend

FIGURES = (
    "ingest_ms",
    "first_send_ms",
    "p50_send_ms",
    "all_sent_s",
    "sends_per_s",
    "answers_per_s",
    "sweep_ms",
    "sweep_sent_s",
    "summary_ms",
    "summary_api_ms",
    "summary_page_ms",
    "compact_ms",
    "arq_noop_jobs_per_s",
    "arq_enqueue_per_s",
    "insert_rows_per_s",
    "sends_vs_arq_noop",
    "sends_vs_insert",
    "peak_rss_mb",
    "worker_peak_rss_mb",
)


@pytest.mark.timeout(120)
async def test_bench_reaches_everyone(backend: Backend, tmp_path: Path) -> None:
    servers = backend.name == "servers"
    options = BenchOptions(
        responders=200,
        database=backend.database_url if servers else "",
        redis=backend.redis_url if servers else "",
        workers=2,
        answer_share=0.5,
        data_dir=tmp_path / "bench",
        quiet=True,
    )
    report = await run_bench(options, progress_stream=io.StringIO())

    for key in FIGURES:
        assert isinstance(report[key], int | float) and report[key] >= 0, key
    assert report["calls"] == 200 and report["responders"] == 200
    # first <= median <= last send, all after the webhook was posted
    assert 0 <= report["first_send_ms"] <= report["p50_send_ms"] <= report["all_sent_s"] * 1000
    # three channels each; a call answered before its last channel was sent skips that send
    assert 200 <= report["messages"] <= 600
    states = report["call_states"]
    assert sum(states.values()) == 200
    assert set(states) <= {"answered", "escalated"}, states
    # the simulation answered some at once; the sweep escalated the silent rest
    assert 0 < report["answered_by_simulation"] < 200
    assert report["sweep_calls"] == 200 - report["answered_by_simulation"]
    # every reply of the burst was on record when its 200 came
    assert report["answers_recorded"] >= 200
    assert report["database"] == ("postgresql" if servers else "sqlite")


def test_bench_command_prints_json_last(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--responders", "20", "--channels", "sms", "--data-dir", str(tmp_path)])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["channels"] == ["sms"] and report["calls"] == 20
    assert len(lines) > 1  # the readable block comes first
    assert set(report["call_states"]) <= {"answered", "escalated"}


def test_bench_refuses_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--channels", "sms,fax"])
    assert exit_.value.code == 2
    assert "channels must be some of sms,wechat,voice" in capsys.readouterr().err


async def test_bench_leaves_a_real_directory_alone(runtime: Runtime) -> None:
    async with runtime.db.transaction() as session:
        session.add(Responder(external_id="a1", name="张三", role="village_cadre"))
    with pytest.raises(NotABenchDatabase, match="1 responders the bench did not create"):
        await clear_bench_data(runtime.db)
    async with runtime.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Responder)) == 1
