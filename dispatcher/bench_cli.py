"""The `jiaoying bench` subcommand: its options, and printing the report."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from dispatcher import event_loop
from dispatcher.bench import CHANNELS, BenchOptions, print_report, run_bench
from dispatcher.bench_world import NotABenchDatabase


def _channels(value: str) -> list[str]:
    channels = [c.strip() for c in value.split(",") if c.strip()]
    unknown = sorted(set(channels) - set(CHANNELS))
    if not channels or unknown:
        raise argparse.ArgumentTypeError(
            f"channels must be some of {','.join(CHANNELS)}; got {value!r}"
        )
    return list(dict.fromkeys(channels))


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _share(value: str) -> float:
    share = float(value)
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return share


def add_bench_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench", help="measure how fast a warning reaches N responders, against the limits"
    )
    bench.add_argument("--responders", type=_positive, default=1000, help="N (default 1000)")
    bench.add_argument("--channels", type=_channels, default=list(CHANNELS))
    bench.add_argument(
        "--database", default="", help="database URL (default: SQLite in a scratch directory)"
    )
    bench.add_argument("--redis", default="", help="Redis URL (default: embedded)")
    bench.add_argument("--workers", type=_positive, default=2, help="arq workers (default 2)")
    bench.add_argument(
        "--answer-share", type=_share, default=0.5, help="share answering at once (0.5)"
    )
    bench.add_argument("--data-dir", type=Path, default=None, help="scratch directory")
    bench.add_argument("--json", action="store_true", help="print only the JSON report")


def run_bench_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = BenchOptions(
        responders=args.responders,
        channels=args.channels,
        database=args.database,
        redis=args.redis,
        workers=args.workers,
        answer_share=args.answer_share,
        data_dir=args.data_dir,
    )
    try:
        report = event_loop.run(run_bench(options))
    except NotABenchDatabase as error:
        print(f"jiaoying bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print_report(report, json_only=args.json)
    return 0
