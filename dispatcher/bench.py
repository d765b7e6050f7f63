"""`jiaoying bench`: how fast a warning reaches everyone, measured against the limits.

One run: the bench process builds a synthetic directory of N responders
(`dispatcher.bench_world`), measures the machine's ceilings on the same back ends
(`dispatcher.bench_limits`), starts K arq workers, each a process of its own
(`dispatcher.bench_worker`), with zero-latency simulated providers (a share of the
recipients answers at once, no delivery receipts), posts one signed red warning covering
everyone to its own webhook (the app runs in the bench process, except for the answer
burst), and times, in order:

1. the webhook to its 202 (`ingest_ms`), then to the first, median and last send handed
   to a provider (`first_send_ms`, `p50_send_ms`, `all_sent_s`, `sends_per_s`);
2. one escalation sweep once every call still silent has been made due, its next step
   moved back past the answer deadline (`sweep_ms`, `sweep_calls`), whose "call again"
   sends the workers then write and make, the last one `sweep_sent_s` after the sweep
   began;
3. a burst of N inbound SMS replies, one from each responder, posted to the inbound route
   over HTTP by 32 concurrent connections of a poster process (`dispatcher.bench_posters`,
   standing in for the provider) to the app served by uvicorn in a process of its own
   (`dispatcher.bench_server`, as `jiaoying serve --api-only` runs it), from the first
   request to the last response (`answers_per_s`): the route answers 200 only once the
   reply's answer is committed (replies arriving together share a transaction,
   `dispatcher.reply_batches`), so this is answers recorded per second, checked against
   the answers on record afterwards (`answers_recorded`);
4. one compaction of the figures' counter rows, as a worker's cron makes every 10 s
   (`compact_ms`), then `GET /api/v1/warnings/{id}` and the dashboard's warning page at N
   calls, logged in as an admin added for the run (`summary_ms`, the slower of the two).

The last line of output is the JSON report; with a terminal, a progress bar goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, TypeVar

import httpx
from sqlalchemy import Interval, func, literal, select, text, update

from dispatcher.app import create_app
from dispatcher.bench_limits import arq_noop_rate, insert_rate
from dispatcher.bench_server import ServerProcess
from dispatcher.bench_worker import WorkerProcess
from dispatcher.bench_world import build_directory, clear_bench_data, red_warning
from dispatcher.config import RedisSettings, Settings, settings_from_dict
from dispatcher.escalation import sweep
from dispatcher.models import Answer, Attempt, Call, CallAgainBatch, FanoutRange
from dispatcher.owed_sends import unwritten
from dispatcher.queue import QUEUE_NAME
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.security import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_body
from dispatcher.users import add_user
from dispatcher.vocabulary import AttemptStatus
from dispatcher.worker import compact_counters_job

CHANNELS = ("sms", "wechat", "voice")
IN_FLIGHT = (AttemptStatus.QUEUED, AttemptStatus.SENDING)
BURST_CONCURRENCY = 32
STALL_S = 60
_T = TypeVar("_T")


@dataclass
class BenchOptions:
    responders: int = 1000
    channels: list[str] = field(default_factory=lambda: list(CHANNELS))
    database: str = ""  # empty: a fresh SQLite file in a scratch directory
    redis: str = ""  # empty: an embedded redis-server
    workers: int = 2
    answer_share: float = 0.5
    data_dir: Path | None = None
    quiet: bool = False  # no progress bar even on a terminal


class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.label = ""
        self.total = 1

    def phase(self, label: str, total: int) -> None:
        self.label, self.total = label, max(1, total)
        self.update(0)

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        share = min(1.0, done / self.total)
        bar = "#" * int(share * 30)
        self.stream.write(f"\r{self.label:<12} [{bar:<30}] {done:>8}/{self.total:<8}")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def bench_settings(options: BenchOptions, data_dir: Path, secret: str) -> Settings:
    database = options.database or f"sqlite+aiosqlite:///{data_dir / 'bench.db'}"
    settings = settings_from_dict(
        {
            "app": {"data_dir": str(data_dir), "public_base_url": "http://bench"},
            "database": {"url": database},
            "redis": {"url": options.redis},
            "senders": [{"name": "bench", "secret": secret}],
            "providers": {
                "simulated": {
                    "delivery_rate": 1.0,
                    "answer_rate": options.answer_share,
                    "help_rate": 0.0,
                    "min_delay_s": 0,
                    "max_delay_s": 0,
                    "delivery_receipts": False,
                }
            },
        },
        env={},
    )
    red = settings.policies["red"].model_copy(update={"channels": list(options.channels)})
    return settings.model_copy(update={"policies": {**settings.policies, "red": red}})


async def _wait_idle(runtime: Runtime, workers: list[WorkerProcess]) -> None:
    """Until the queue is empty (a running job stays in it until done), twice in a row."""
    calm = 0
    while calm < 2:
        _check_alive(workers)
        calm = calm + 1 if await _idle(runtime) else 0
        await asyncio.sleep(0.05)


def _check_alive(workers: list[WorkerProcess]) -> None:
    if not all(worker.alive for worker in workers):
        raise RuntimeError("a worker stopped during the benchmark")


async def _in_flight(runtime: Runtime, warning_id: int) -> tuple[int, int]:
    """(attempts not yet handed to a provider, all attempts) of the warning; a range of
    calls whose first sends are not written yet counts as one waiting, as does a batch
    of call-again sends."""
    async with runtime.db.sessions() as session:
        waiting, total = (
            await session.execute(
                select(func.count().filter(Attempt.status.in_(IN_FLIGHT)), func.count()).where(
                    Attempt.warning_id == warning_id
                )
            )
        ).one()
        owed = 0
        for records in (unwritten(FanoutRange, warning_id), unwritten(CallAgainBatch, warning_id)):
            owed += int(await session.scalar(select(func.count()).where(records)) or 0)
    return int(waiting) + owed, int(total)


WAIT_POLL_S = 1.0


async def _wait_sent(
    runtime: Runtime, warning_id: int, workers: list[WorkerProcess], progress: Progress
) -> None:
    """Until every attempt of the warning is handed to a provider (or given up).

    With the queue idle and attempts still waiting, runs the sweep as a worker's cron
    would (it enqueues what is due but not in flight); no progress for a minute is an error.
    """
    waiting, total = await _in_flight(runtime, warning_id)
    progress.phase("sending", total)
    last_change, last_waiting = time.monotonic(), waiting
    while waiting:
        _check_alive(workers)
        # Counting 300,000 attempts takes PostgreSQL ~100 ms; ten times a second that was
        # a third of a core taken from the workers being measured. The send times come
        # from `attempts.sent_at`, not from when this loop notices.
        await asyncio.sleep(WAIT_POLL_S)
        waiting, total = await _in_flight(runtime, warning_id)
        progress.total = max(1, total)
        progress.update(total - waiting)
        if waiting != last_waiting:
            last_change, last_waiting = time.monotonic(), waiting
        elif time.monotonic() - last_change > STALL_S:
            raise RuntimeError(f"{waiting} sends made no progress for {STALL_S} s")
        elif waiting and await _idle(runtime):
            await sweep(runtime)
    progress.update(progress.total)


async def _idle(runtime: Runtime) -> bool:
    return await runtime.queue.depth() == 0


async def _retries_sent_s(runtime: Runtime, warning_id: int, start: datetime) -> float:
    """Seconds from `start` (the sweep's) to the last of the warning's second tries
    handed to a provider: when the sweep's "call again" had reached everyone."""
    async with runtime.db.sessions() as session:
        last = await session.scalar(
            select(func.max(Attempt.sent_at)).where(
                Attempt.warning_id == warning_id, Attempt.try_number == 2
            )
        )
    if last is None:
        raise RuntimeError("the sweep's call-again sends were not sent")
    return round((last - start).total_seconds(), 3)


async def _send_times(
    runtime: Runtime, warning_id: int, start: datetime
) -> tuple[float, float, float, int]:
    """(first, median, last) ms from `start` of the warning's sends, and how many."""
    async with runtime.db.sessions() as session:
        sent = select(Attempt.sent_at).where(
            Attempt.warning_id == warning_id, Attempt.sent_at.is_not(None)
        )
        count = int(await session.scalar(select(func.count()).select_from(sent.subquery())) or 0)
        first = await session.scalar(sent.order_by(Attempt.sent_at).limit(1))
        median = await session.scalar(sent.order_by(Attempt.sent_at).offset(count // 2).limit(1))
        last = await session.scalar(sent.order_by(Attempt.sent_at.desc()).limit(1))
    if count == 0 or first is None or median is None or last is None:
        raise RuntimeError("nothing was sent")

    def ms(moment: datetime) -> float:
        return round((moment - start).total_seconds() * 1000, 1)

    return ms(first), ms(median), ms(last), count


async def _burst(runtime: Runtime, warning_id: int, responders: int, progress: Progress) -> float:
    """Seconds for N inbound SMS replies, one per responder, 32 at a time, posted by a
    process of their own to the app served by a process of its own."""
    progress.phase("answers", responders)
    server = await ServerProcess.start(_for_workers(runtime))
    try:
        posters = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dispatcher.bench_posters",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        job = {
            "port": server.port,
            "responders": responders,
            "concurrency": BURST_CONCURRENCY,
            "path": "/hooks/sms/inbound",
        }
        output, _ = await _watch(
            runtime, warning_id, posters.communicate(json.dumps(job).encode() + b"\n"), progress
        )
    finally:
        await server.stop()
    lines = output.decode().strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    if result.get("refused"):
        raise RuntimeError(result["refused"])
    if result.get("elapsed_s") is None:
        raise RuntimeError(f"the reply posters failed (exit {posters.returncode})")
    progress.update(responders)
    return float(result["elapsed_s"])


async def _watch(runtime: Runtime, warning_id: int, work: Awaitable[_T], progress: Progress) -> _T:
    """Await `work`, updating the progress bar from the answers on record meanwhile."""
    task = asyncio.ensure_future(work)
    if progress.enabled:
        before = await _sms_answers(runtime, warning_id)
        while not task.done():
            await asyncio.wait([task], timeout=0.5)
            progress.update(await _sms_answers(runtime, warning_id) - before)
    return await task


async def _sms_answers(runtime: Runtime, warning_id: int) -> int:
    """SMS answers on record for the warning's calls."""
    async with runtime.db.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Answer)
            .join(Call, Call.id == Answer.call_id)
            .where(Call.warning_id == warning_id, Answer.channel == "sms")
        )
    return int(count or 0)


async def _timed_get(client: httpx.AsyncClient, url: str) -> float:
    """Median ms of three GETs after one to warm up."""
    timings = []
    for round_ in range(4):
        started = time.perf_counter()
        response = await client.get(url)
        response.raise_for_status()
        if round_:
            timings.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(timings), 1)


async def _sign_in(runtime: Runtime, client: httpx.AsyncClient) -> None:
    """Add an admin for this run and log the client in through the login form."""
    password = secrets.token_urlsafe(16)
    async with runtime.db.transaction() as session:
        await add_user(
            session,
            username="bench",
            password=password,
            role="admin",
            region_code=None,
            now=runtime.clock.now(),
        )
    form = (await client.get("/login")).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    if token is None:
        raise RuntimeError("the login page carries no CSRF token")
    response = await client.post(
        "/login",
        data={"username": "bench", "password": password, "csrf_token": token[1], "next": "/"},
    )
    if response.status_code != 303:
        raise RuntimeError(f"the bench could not log in: {response.status_code}")


async def _call_states(runtime: Runtime, warning_id: int) -> dict[str, int]:
    async with runtime.db.sessions() as session:
        rows = await session.execute(
            select(Call.state, func.count())
            .where(Call.warning_id == warning_id)
            .group_by(Call.state)
        )
        return {str(state): int(count) for state, count in rows.all()}


async def run_bench(options: BenchOptions, progress_stream: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the benchmark; returns the report (what `jiaoying bench` prints as JSON)."""
    data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="jiaoying-bench-"))
    secret = secrets.token_hex(16)
    settings = bench_settings(options, data_dir, secret)
    progress = Progress(progress_stream, progress_stream.isatty() and not options.quiet)
    n = options.responders
    runtime = await open_runtime(settings)
    workers: list[WorkerProcess] = []
    report: dict[str, Any] = {
        "responders": n,
        "channels": list(options.channels),
        "workers": options.workers,
        "answer_share": options.answer_share,
        "database": "postgresql" if not runtime.db.is_sqlite else "sqlite",
        "redis": "server" if options.redis else "embedded",
    }
    try:
        await clear_bench_data(runtime.db)
        # jobs an interrupted run left would name rows just emptied, and go first
        await runtime.queue.pool.delete(QUEUE_NAME)
        progress.phase("directory", n)
        report["regions"] = await build_directory(runtime.db, n, progress.update)

        progress.phase("raw INSERT", n)
        report["insert_rows_per_s"] = await insert_rate(runtime.db, n)
        progress.update(n)
        progress.phase("raw arq", n)
        report.update(await arq_noop_rate(runtime.queue, n, options.workers, progress.update))
        progress.update(n)

        worker_settings = _for_workers(runtime)
        for _ in range(options.workers):
            workers.append(await WorkerProcess.start(worker_settings))
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await _measure(runtime, client, workers, progress, report)
    finally:
        worker_rss = await asyncio.gather(*(worker.stop() for worker in workers))
        await runtime.aclose()
    # The bench process (API, ingest, sweep, measurements) and the busiest worker apart:
    # a worker's memory should not grow with N.
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    known = [rss for rss in worker_rss if rss is not None]
    report["worker_peak_rss_mb"] = max(known) if known else None
    return report


def _for_workers(runtime: Runtime) -> Settings:
    """The bench's settings as a worker process needs them: an embedded Redis is reached
    through its socket (the worker joins the bench's server rather than starting one)."""
    settings = runtime.settings
    socket = runtime.redis.settings.unix_socket_path
    if runtime.redis.embedded is None or socket is None:
        return settings
    return settings.model_copy(update={"redis": RedisSettings(url=f"unix://{socket}")})


async def _make_due(runtime: Runtime, warning_id: int, by: timedelta) -> None:
    """Move every waiting ladder step of the warning's calls `by` earlier (as if that much
    time had passed), so the sweep finds them due by the system clock the workers share.

    On PostgreSQL the calls are then vacuumed, as autovacuum would have done in the
    minutes this stands in for (a table whose every row changed is well past its
    threshold; this machine's server runs with autovacuum off): the stand-in's own
    UPDATE, which time passing would not make, leaves a dead row and a dead entry in
    each index for every call, and the sweep would walk them."""
    waiting = (Call.warning_id == warning_id, Call.next_step_at.is_not(None))
    if not runtime.db.is_sqlite:
        async with runtime.db.transaction() as session:
            earlier = Call.next_step_at - literal(by, Interval())
            await session.execute(update(Call).where(*waiting).values(next_step_at=earlier))
        engine = runtime.db.engine.execution_options(isolation_level="AUTOCOMMIT")
        async with engine.connect() as connection:
            await connection.execute(text("VACUUM ANALYZE calls"))
        return
    async with runtime.db.transaction() as session:
        # SQLite keeps times as text: no arithmetic on them in SQL.
        rows = (await session.execute(select(Call.id, Call.next_step_at).where(*waiting))).all()
        if rows:
            await session.execute(
                update(Call), [{"id": id_, "next_step_at": at - by} for id_, at in rows if at]
            )


async def _measure(
    runtime: Runtime,
    client: httpx.AsyncClient,
    workers: list[WorkerProcess],
    progress: Progress,
    report: dict[str, Any],
) -> None:
    n = report["responders"]
    start = runtime.clock.now()
    body = red_warning(f"BENCH-{start:%Y%m%d%H%M%S}-{secrets.token_hex(3)}", start)
    timestamp = str(int(start.timestamp()))
    headers = {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign_body(runtime.settings.effective_senders[0].secret, timestamp, body),
        "Content-Type": "application/cap+xml",
    }
    started = time.perf_counter()
    response = await client.post("/api/v1/warnings", content=body, headers=headers)
    report["ingest_ms"] = round((time.perf_counter() - started) * 1000, 1)
    if response.status_code != 202:
        raise RuntimeError(f"the webhook refused the warning: {response.text}")
    warning_id = int(response.json()["id"])
    report["calls"] = int(response.json()["calls"])

    await _wait_sent(runtime, warning_id, workers, progress)
    first, median, last, sends = await _send_times(runtime, warning_id, start)
    report.update(
        messages=sends,
        first_send_ms=first,
        p50_send_ms=median,
        all_sent_s=round(last / 1000, 3),
        sends_per_s=round(sends / max(last / 1000, 1e-9), 1),
    )
    report["sends_vs_arq_noop"] = round(report["sends_per_s"] / report["arq_noop_jobs_per_s"], 3)
    report["sends_vs_insert"] = round(report["sends_per_s"] / report["insert_rows_per_s"], 3)
    await _wait_idle(runtime, workers)
    report["answered_by_simulation"] = (await _call_states(runtime, warning_id)).get("answered", 0)

    policy = runtime.settings.policy_for("red")
    await _make_due(runtime, warning_id, timedelta(minutes=policy.ladder[0].at_min, seconds=1))
    sweep_start = runtime.clock.now()
    started = time.perf_counter()
    swept = await sweep(runtime)
    report["sweep_ms"] = round((time.perf_counter() - started) * 1000, 1)
    report["sweep_calls"] = swept.steps
    await _wait_sent(runtime, warning_id, workers, progress)
    report["sweep_sent_s"] = await _retries_sent_s(runtime, warning_id, sweep_start)
    await _wait_idle(runtime, workers)

    before = await _sms_answers(runtime, warning_id)
    elapsed = await _burst(runtime, warning_id, n, progress)
    report["answers_per_s"] = round(n / max(elapsed, 1e-9), 1)
    report["answers_recorded"] = await _sms_answers(runtime, warning_id) - before
    if report["answers_recorded"] < n:
        raise RuntimeError(f"{n} replies got their 200 but {report['answers_recorded']} stored")
    await _wait_idle(runtime, workers)

    # Workers compact the figures' counter rows every 10 s (`worker.compact_counters_job`,
    # which also refreshes statistics); the bench's workers run no cron, so it runs that
    # job here, timed, as it sweeps.
    started = time.perf_counter()
    await compact_counters_job({"runtime": runtime})
    report["compact_ms"] = round((time.perf_counter() - started) * 1000, 1)
    await _sign_in(runtime, client)
    report["summary_api_ms"] = await _timed_get(client, f"/api/v1/warnings/{warning_id}")
    report["summary_page_ms"] = await _timed_get(client, f"/warnings/{warning_id}")
    report["summary_ms"] = max(report["summary_api_ms"], report["summary_page_ms"])
    report["call_states"] = await _call_states(runtime, warning_id)


def print_report(
    report: dict[str, Any], out: TextIO | None = None, *, json_only: bool = False
) -> None:
    """A readable block (unless `json_only`), then the JSON report as the last line."""
    out = out or sys.stdout
    for key in (
        ()
        if json_only
        else (
            "ingest_ms",
            "first_send_ms",
            "p50_send_ms",
            "all_sent_s",
            "sends_per_s",
            "answers_per_s",
            "sweep_ms",
            "sweep_sent_s",
            "summary_ms",
            "arq_noop_jobs_per_s",
            "insert_rows_per_s",
            "peak_rss_mb",
        )
    ):
        out.write(f"{key:>22}: {report.get(key)}\n")
    out.write(json.dumps(report, ensure_ascii=False, sort_keys=True) + "\n")
    out.flush()
