"""Providers that receive reports on a connection of their own (MQTT speakers).

`run_listeners` runs each such provider's `listen` for the life of a worker; every
report it hands over is queued as a callback job, the same path an HTTP callback of a
simulated provider takes, so an early report is retried until its send is recorded.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict

from channels.base import CallbackRequest, Provider
from dispatcher.runtime import Runtime

log = logging.getLogger(__name__)


async def _listen(runtime: Runtime, channel: str, provider: Provider) -> None:
    async def deliver(request: CallbackRequest) -> None:
        await runtime.queue.enqueue_callback(channel, provider.name, asdict(request), 0)

    log.info("listening for %s reports from %s", channel, provider.name)
    await provider.listen(deliver)


async def run_listeners(runtime: Runtime) -> None:
    """Run every listening provider until cancelled."""
    listeners = runtime.providers.listeners()
    if not listeners:
        return
    await asyncio.gather(*(_listen(runtime, c, p) for c, p in listeners))
