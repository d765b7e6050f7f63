"""The figures `/metrics` exposes, gathered from the database and Redis at scrape time.

Written in the Prometheus text format by hand (gauges and one histogram): every worker
shares the database and Redis, so any API process can answer for all of them, and no
process-local counters are needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from dispatcher.circuit import CLOSED, HALF_OPEN, OPEN
from dispatcher.models import Attempt, Broadcast, Call, Warning
from dispatcher.runtime import Runtime

# Seconds from a call's start to its first answer.
LATENCY_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600)


def _label_text(labels: dict[str, Any]) -> str:
    if not labels:
        return ""
    escaped = (
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + ",".join(escaped) + "}"


class MetricsText:
    """Collects metric families and renders them."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, Any], float]]
    ) -> None:
        self._lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            self._lines.append(f"{name}{_label_text(labels)} {_number(value)}")

    def histogram(
        self, name: str, help_text: str, values: list[float], buckets: Iterable[float]
    ) -> None:
        self._lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for bound in buckets:
            count = sum(1 for value in values if value <= bound)
            self._lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {count}')
        self._lines += [
            f'{name}_bucket{{le="+Inf"}} {len(values)}',
            f"{name}_sum {_number(sum(values))}",
            f"{name}_count {len(values)}",
        ]

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


async def collect(runtime: Runtime) -> str:
    out = MetricsText()
    async with runtime.db.sessions() as session:
        warnings = await session.execute(
            select(Warning.state, func.count()).group_by(Warning.state)
        )
        out.family(
            "jiaoying_warnings",
            "gauge",
            "Warnings stored, by state.",
            (({"state": s}, n) for s, n in warnings.all()),
        )
        calls = await session.execute(select(Call.state, func.count()).group_by(Call.state))
        out.family(
            "jiaoying_calls",
            "gauge",
            "Calls (one warning to one responder), by state.",
            (({"state": s}, n) for s, n in calls.all()),
        )
        attempts = await session.execute(
            select(Attempt.channel, Attempt.provider, Attempt.status, func.count()).group_by(
                Attempt.channel, Attempt.provider, Attempt.status
            )
        )
        out.family(
            "jiaoying_attempts",
            "gauge",
            "Attempts, by channel, provider and status.",
            (
                ({"channel": c, "provider": p or "", "status": s}, n)
                for c, p, s, n in attempts.all()
            ),
        )
        broadcasts = await session.execute(
            select(Broadcast.provider, Broadcast.status, func.count()).group_by(
                Broadcast.provider, Broadcast.status
            )
        )
        out.family(
            "jiaoying_broadcasts",
            "gauge",
            "Broadcasts to speakers, by provider and status.",
            (({"provider": p or "", "status": s}, n) for p, s, n in broadcasts.all()),
        )
        answered = await session.execute(
            select(Call.started_at, Call.answered_at).where(Call.answered_at.is_not(None))
        )
        latencies = [(end - start).total_seconds() for start, end in answered.all() if end]
    out.histogram(
        "jiaoying_answer_latency_seconds",
        "Time from a call's start to its first answer.",
        latencies,
        LATENCY_BUCKETS,
    )
    out.family(
        "jiaoying_queue_depth",
        "gauge",
        "Jobs waiting in the queue (including deferred ones).",
        [({}, await runtime.queue.depth())],
    )
    now = runtime.clock.now()
    circuit_samples = []
    for channel, provider in runtime.providers.named():
        state = await runtime.breakers.state(channel, provider, now)
        for candidate in (CLOSED, OPEN, HALF_OPEN):
            labels = {"channel": channel, "provider": provider, "state": candidate}
            circuit_samples.append((labels, 1 if state == candidate else 0))
    out.family(
        "jiaoying_provider_circuit_state",
        "gauge",
        "Circuit breaker state per provider (1 for the current state).",
        circuit_samples,
    )
    return out.render()
