"""The `jiaoying` command: serve, worker, db upgrade, import, user add, demo, bench."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import sys
from pathlib import Path

import uvicorn

from dispatcher import event_loop
from dispatcher.app import create_app
from dispatcher.bench_cli import add_bench_parser, run_bench_command
from dispatcher.clock import Clock, SystemClock
from dispatcher.config import ConfigError, Settings, load_settings
from dispatcher.db import Database
from dispatcher.directory import DirectoryImportError, import_directory
from dispatcher.listeners import run_listeners
from dispatcher.migrations import upgrade
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.statistics import DIRECTORY_TABLES, refresh_statistics
from dispatcher.users import UserRefused, add_user, count_users
from dispatcher.worker import build_worker, run_until_stopped

log = logging.getLogger("jiaoying")


def _setup_logging(settings: Settings) -> None:
    fmt = settings.app.log_format
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    if fmt == "json":
        pattern = (
            '{"at":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}'
        )
    else:
        pattern = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO, format=pattern)
    logging.getLogger("arq").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


async def run_services(
    runtime: Runtime, *, api: bool, worker: bool, port: int | None = None
) -> tuple[list[asyncio.Task[None]], uvicorn.Server | None]:
    """Start the API server and/or a worker as tasks on this loop."""
    tasks: list[asyncio.Task[None]] = []
    server = None
    if api:
        settings = runtime.settings
        config = uvicorn.Config(
            create_app(runtime),
            host=settings.server.host,
            port=port or settings.server.port,
            log_level="warning",
        )
        server = uvicorn.Server(config)
        tasks.append(asyncio.create_task(server.serve()))
    if worker:
        tasks.append(asyncio.create_task(run_until_stopped(build_worker(runtime))))
        if runtime.providers.listeners():
            tasks.append(asyncio.create_task(run_listeners(runtime)))
    return tasks, server


async def _serve(
    settings: Settings, *, api: bool, worker: bool, clock: Clock | None = None
) -> None:
    runtime = await open_runtime(settings, clock=clock)
    try:
        tasks, _ = await run_services(runtime, api=api, worker=worker)
        if api:
            await _login_hint(runtime)
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in done:
            task.result()
    finally:
        await runtime.aclose()


async def _login_hint(runtime: Runtime) -> None:
    base = runtime.settings.app.public_base_url.rstrip("/")
    async with runtime.db.sessions() as session:
        users = await count_users(session)
    print(f"dashboard: {base}/dashboard (log in at {base}/login)", flush=True)
    if users == 0:
        print(
            "no dashboard users yet: add one with "
            "`jiaoying user add NAME --role admin` (it asks for the password)",
            flush=True,
        )


async def _add_user(settings: Settings, args: argparse.Namespace) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ; nothing was added", file=sys.stderr)
            return 1
    db = _open_database(settings)
    try:
        await upgrade(db.engine)
        async with db.transaction() as session:
            await add_user(
                session,
                username=args.username,
                password=password,
                role=args.role,
                region_code=args.region,
                now=SystemClock().now(),
            )
    except UserRefused as error:
        print(f"user not added: {error}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()
    where = f" over region {args.region}" if args.region else ""
    print(f"added {args.role} {args.username}{where}")
    return 0


def _open_database(settings: Settings) -> Database:
    settings.app.data_dir.mkdir(parents=True, exist_ok=True)
    return Database(settings.database_url)


async def _upgrade(settings: Settings) -> None:
    db = _open_database(settings)
    try:
        await upgrade(db.engine)
    finally:
        await db.dispose()


async def _import(settings: Settings, directory: Path) -> int:
    db = _open_database(settings)
    try:
        await upgrade(db.engine)
        async with db.transaction() as session:
            report = await import_directory(session, directory)
        await refresh_statistics(db, DIRECTORY_TABLES)
    except DirectoryImportError as error:
        print(f"import refused, nothing was imported:\n{error}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()
    print(report.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jiaoying", description="叫应 early-warning dispatcher")
    parser.add_argument("--config", help="TOML settings file (default: $JIAOYING_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API and a worker in one process")
    serve.add_argument("--api-only", action="store_true", help="run the API without a worker")
    commands.add_parser("worker", help="run a worker (send jobs and the escalation sweep)")
    db = commands.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["upgrade"])
    imp = commands.add_parser("import", help="import regions/responders/speakers CSV files")
    imp.add_argument("directory", type=Path)
    user = commands.add_parser("user", help="dashboard users")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", help="add a dashboard user")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=["admin", "supervisor", "viewer"])
    add.add_argument("--region", help="region code: the subtree a supervisor/viewer sees")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    demo = commands.add_parser("demo", help="run a sample county through a red rainstorm warning")
    demo.add_argument("--speed", type=float, default=10.0, help="demo clock speed (default 10x)")
    demo.add_argument("--port", type=int, default=None)
    demo.add_argument("--until-done", action="store_true", help="exit when the ladder is done")
    add_bench_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "bench":
        return run_bench_command(args)

    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(f"jiaoying: {error}", file=sys.stderr)
        return 2
    _setup_logging(settings)
    try:
        if args.command == "serve":
            event_loop.run(_serve(settings, api=True, worker=not args.api_only))
        elif args.command == "worker":
            event_loop.run(_serve(settings, api=False, worker=True))
        elif args.command == "db":
            event_loop.run(_upgrade(settings))
            print("database is at the latest revision")
        elif args.command == "user":
            return event_loop.run(_add_user(settings, args))
        elif args.command == "import":
            return event_loop.run(_import(settings, args.directory))
        elif args.command == "demo":
            from dispatcher.demo import run_demo

            return event_loop.run(
                run_demo(settings, speed=args.speed, port=args.port, until_done=args.until_done)
            )
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
