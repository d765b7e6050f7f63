"""The command line: import refuses bad directories whole; demo runs its scenario to the end."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher import collector, event_loop


def run(args: list[str], cwd: Path, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIAOYING_")}
    return subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", *args],
        cwd=cwd,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_import_reports_bad_rows_and_imports_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    (directory / "regions.csv").write_text(
        "code,name,level,parent_code\n441799000000,青溪县,county,\n441799100000,城关镇,city,441799000000\n",
        encoding="utf-8",
    )
    result = run(["import", str(directory)], tmp_path)
    assert result.returncode == 1
    assert "regions.csv:3" in result.stderr and "nothing was imported" in result.stderr


def test_bad_config_is_an_error_message(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[worker]\nsweep_interval_s = 0\n")
    result = run(["--config", str(tmp_path / "bad.toml"), "db", "upgrade"], tmp_path)
    assert result.returncode == 2 and "worker.sweep_interval_s" in result.stderr


@pytest.mark.timeout(200)
def test_demo_runs_to_door_knock_tasks(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(["demo", "--speed", "60", "--port", str(port), "--until-done"], tmp_path, 180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "posted a red rainstorm warning: 200 calls" in result.stdout
    assert "(log in as demo / " in result.stdout
    last = [line for line in result.stdout.splitlines() if line.startswith("[+")][-1]
    assert "answered=" in last and "unanswered=" in last
    assert "door_knock_tasks=0" not in last


def test_user_add_takes_the_password_from_stdin(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIAOYING_")}

    def user_add(*args: str, password: str = "a long enough secret\n") -> Any:
        return subprocess.run(
            [sys.executable, "-m", "dispatcher.cli", "user", "add", *args, "--password-stdin"],
            cwd=tmp_path,
            env=env,
            input=password,
            text=True,
            capture_output=True,
            timeout=60,
            check=False,
        )

    added = user_add("chief", "--role", "admin")
    assert added.returncode == 0 and "added admin chief" in added.stdout, added.stderr
    again = user_add("chief", "--role", "admin")
    assert again.returncode == 1 and "exists already" in again.stderr
    short = user_add("shorty", "--role", "viewer", password="short\n")
    assert short.returncode == 1 and "password" in short.stderr
    nowhere = user_add("town", "--role", "supervisor", "--region", "441799100000")
    assert nowhere.returncode == 1 and "no region with code" in nowhere.stderr


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """`event_loop.run` tunes this process's collector: the other tests get it back."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_commands_collect_cycles_less_often(collector_restored: None) -> None:
    async def thresholds() -> tuple[int, int, int]:
        return gc.get_threshold()

    assert event_loop.run(thresholds()) == (collector.YOUNG, collector.MIDDLE, collector.FULL)


def test_commands_run_on_uvloop_where_it_is_installed(collector_restored: None) -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert event_loop.run(loop_module()).split(".")[0] == expected
