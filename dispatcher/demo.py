"""`jiaoying demo`: a sample county lives through a red rainstorm warning.

It writes the sample directory (青溪县, ~200 responders) as CSV and imports it through the
same import as `jiaoying import`, starts the API and a worker in this process on a clock
running `speed` times faster (so the five-minute red deadline passes in half a minute),
posts a signed CAP alert to its own webhook, and prints how answers, escalations and
door-knock tasks come in. Simulated recipients answer with a delay; some stay silent.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from dispatcher.cli import run_services
from dispatcher.clock import ScaledClock
from dispatcher.config import Settings
from dispatcher.demo_county import COUNTY_CODE, write_demo_directory
from dispatcher.directory import import_directory
from dispatcher.models import Call, DoorKnockTask
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.security import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_body
from dispatcher.users import demo_admin
from dispatcher.vocabulary import OPEN_CALL_STATES

DEMO_CAP = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>{county}@cma.gov.cn</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Likely</certainty>
    <expires>{expires}</expires>
    <senderName>青溪县气象台</senderName>
    <headline>青溪县气象台发布暴雨红色预警信号</headline>
    <description>受强降雨云团影响，预计未来3小时青溪县大部分乡镇将出现100毫米以上降雨，山洪、地质灾害风险极高。</description>
    <instruction>立即转移山洪地质灾害危险区群众，停止户外作业，做好防御准备。</instruction>
    <parameter><valueName>预警级别</valueName><value>红色</value></parameter>
    <area>
      <areaDesc>青溪县全境</areaDesc>
      <geocode><valueName>行政区划代码</valueName><value>{county}</value></geocode>
    </area>
  </info>
</alert>
"""


def demo_settings(settings: Settings) -> Settings:
    """The embedded default, with recipients that take their time and a quick sweep."""
    simulated = settings.providers.simulated.model_copy(
        update={"answer_rate": 0.8, "min_delay_s": 20.0, "max_delay_s": 480.0}
    )
    return settings.model_copy(
        update={
            "providers": settings.providers.model_copy(update={"simulated": simulated}),
            "worker": settings.worker.model_copy(update={"sweep_interval_s": 2}),
        }
    )


async def _figures(runtime: Runtime, warning_id: int) -> tuple[dict[str, int], int]:
    async with runtime.db.sessions() as session:
        states = dict(
            (
                await session.execute(
                    select(Call.state, func.count())
                    .where(Call.warning_id == warning_id)
                    .group_by(Call.state)
                )
            ).all()
        )
        tasks = await session.scalar(
            select(func.count())
            .select_from(DoorKnockTask)
            .where(DoorKnockTask.warning_id == warning_id)
        )
    return states, int(tasks or 0)


async def run_demo(settings: Settings, *, speed: float, port: int | None, until_done: bool) -> int:
    settings = demo_settings(settings)
    clock = ScaledClock(speed)
    runtime = await open_runtime(settings, clock=clock)
    try:
        directory = settings.app.data_dir / "demo-directory"
        write_demo_directory(directory)
        async with runtime.db.transaction() as session:
            print((await import_directory(session, directory)).summary())
            username, password = await demo_admin(session, clock.now())
        tasks, server = await run_services(runtime, api=True, worker=True, port=port)
        # uvicorn exposes only a flag for "listening", no event to wait on.
        while server is not None and not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        base = f"http://{settings.server.host}:{port or settings.server.port}"
        now = clock.now()
        body = DEMO_CAP.format(
            identifier=f"DEMO_{now:%Y%m%d%H%M%S}",
            county=COUNTY_CODE,
            sent=now.isoformat(timespec="seconds"),
            expires=(now + timedelta(hours=6)).isoformat(timespec="seconds"),
        ).encode()
        sender = settings.effective_senders[0]
        timestamp = str(int(now.timestamp()))
        headers = {
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign_body(sender.secret, timestamp, body),
            "Content-Type": "application/cap+xml",
        }
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{base}/api/v1/warnings", content=body, headers=headers)
        response.raise_for_status()
        result = response.json()
        warning_id = result["id"]
        print(
            f"posted a red rainstorm warning: {result['calls']} calls, "
            f"{result['broadcasts']} broadcasts (clock runs {speed:g}x)"
        )
        print(f"dashboard: {base}/dashboard  (log in as {username} / {password})", flush=True)
        while True:
            await asyncio.sleep(3)
            states, task_count = await _figures(runtime, warning_id)
            elapsed = clock.now() - now
            print(
                f"[+{int(elapsed.total_seconds() // 60):>3} min] "
                + " ".join(f"{k}={v}" for k, v in sorted(states.items()))
                + f" door_knock_tasks={task_count}",
                flush=True,
            )
            still_open = sum(states.get(s, 0) for s in OPEN_CALL_STATES)
            if until_done and still_open == 0:
                break
            if any(t.done() for t in tasks):
                break
        if server is not None:
            server.should_exit = True
        for task in tasks:
            if server is None or task is not tasks[0]:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await runtime.aclose()
    return 0
