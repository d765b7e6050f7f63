"""Group commit for inbound texts: replies that arrive together are recorded together.

In a burst (everyone texting `1` within a minute of a red warning) each reply on its
own would be a transaction of a dozen statements. Instead each callback's texts wait
here, and one task at a time records every text waiting, in arrival order, in one
transaction (`dispatcher.text_replies.handle_texts`): while one batch commits, the next
gathers. A callback's `record` returns only after the transaction holding its texts has
committed and their replies are enqueued, so a provider's 200 still means the answer is
stored. A failed batch is tried again callback by callback, so one bad text fails only
its own request. With one callback at a time this is simply one transaction per callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dispatcher.text_replies import Text, handle_texts

if TYPE_CHECKING:
    from dispatcher.runtime import Runtime

log = logging.getLogger(__name__)
# Callbacks recorded in one transaction at most: bounds how long its locks are held.
MAX_BATCH = 100

_Waiting = tuple[Sequence[Text], "asyncio.Future[None]"]


class ReplyBatcher:
    """The texts waiting to be recorded, and the task recording them."""

    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._task: asyncio.Task[None] | None = None

    async def record(self, runtime: Runtime, texts: Sequence[Text]) -> None:
        """Record one callback's texts; returns once they are committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((texts, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(runtime))
        await future

    async def _drain(self, runtime: Runtime) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                await self._record(runtime, batch)
        except BaseException as exc:
            # Cancelled (the loop is closing): nobody may wait for a batch that never comes.
            for _, future in self._waiting:
                _fail(future, exc)
            self._waiting.clear()
            raise

    async def _record(self, runtime: Runtime, batch: list[_Waiting]) -> None:
        try:
            attempt_ids = await store_texts(runtime, [text for texts, _ in batch for text in texts])
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            log.warning("recording %d replies together failed (%s); one by one", len(batch), exc)
            for waiting in batch:
                await self._record(runtime, [waiting])
            return
        except BaseException as exc:
            for _, future in batch:
                _fail(future, exc)
            raise
        try:
            await runtime.queue.enqueue_attempts(attempt_ids)
        except Exception as exc:
            # Committed, so never tried again here; the sweep enqueues queued sends.
            for _, future in batch:
                _fail(future, exc)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)


async def store_texts(runtime: Runtime, texts: Sequence[Text]) -> list[int]:
    """Record texts in one transaction; returns the ids of the texts it queued."""
    async with runtime.db.transaction() as session:
        return await handle_texts(runtime, session, texts, runtime.clock.now())


def _fail(future: asyncio.Future[None], exc: BaseException) -> None:
    if not future.done():
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)
