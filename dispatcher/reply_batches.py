"""Group commit for inbound texts: replies that arrive together are recorded together.

In a burst (everyone texting `1` within a minute of a red warning) each reply on its
own would be a transaction of a dozen statements. Instead each callback's texts wait
here and are recorded in batches, in arrival order, each batch one transaction
(`dispatcher.text_replies.handle_texts`). On PostgreSQL two batches are in flight at
once, so the texts arriving while one waits on the database gather into the next
rather than behind it; a text waits for any batch holding an earlier text from the same
number, so one person's texts are still taken in the order they came. (SQLite writes
one transaction at a time: one batch there.) A callback's `record` returns only after
the transaction holding its texts has committed, so a provider's 200 still means the
answer is stored. A failed batch is tried again callback by callback, so one bad text
fails only its own request. With one callback at a time this is simply one transaction
per callback.

The replies (thank-you texts) a batch queues are handed to the workers together with
those of the batches after it: in a burst a batch holds a dozen replies, and a send job
of a dozen costs the workers as much as one of `SEND_BATCH`. They are enqueued once
`SEND_BATCH` are owed, or as soon as no batch is in flight and no callback waits, before
the callbacks of that last batch are answered: a lone reply goes out at once, and a
burst's last replies as soon as it ends. Replies committed but not yet enqueued when the
process stops are queued sends on record, which the sweep enqueues.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dispatcher.phones import try_normalize_phone
from dispatcher.queue import SEND_BATCH
from dispatcher.text_replies import Text, handle_texts

if TYPE_CHECKING:
    from dispatcher.runtime import Runtime

log = logging.getLogger(__name__)
# Callbacks recorded in one transaction at most: bounds how long its locks are held.
MAX_BATCH = 100
# Batches in flight at once on PostgreSQL.
MAX_IN_FLIGHT = 2
# Callbacks waiting that start a batch beside one in flight.
SECOND_BATCH = 16


class _Waiting:
    """One callback's texts, the numbers they came from, and who waits for them."""

    __slots__ = ("future", "senders", "texts")

    def __init__(self, texts: Sequence[Text], future: asyncio.Future[None]) -> None:
        self.texts = texts
        self.future = future
        self.senders = {try_normalize_phone(e.sender) or e.sender for e, _ in texts}


class ReplyBatcher:
    """The texts waiting to be recorded, and the tasks recording them."""

    def __init__(self, max_batch: int = MAX_BATCH, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._waiting: list[_Waiting] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Numbers with a text in a batch in flight: their next texts wait for it.
        self._busy: Counter[str] = Counter()
        # Replies committed by batches, not yet enqueued.
        self._owed: list[int] = []

    async def record(self, runtime: Runtime, texts: Sequence[Text]) -> None:
        """Record one callback's texts; returns once they are committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(texts, future))
        self._start(runtime)
        await future

    def _start(self, runtime: Runtime) -> None:
        """Start another batch task if there is none, or if a crowd waits and fewer than
        the limit are in flight; each takes what is waiting once it runs, so what arrives
        meanwhile joins its batch."""
        limit = 1 if runtime.db.is_sqlite else self.max_in_flight
        if not self._tasks or (len(self._tasks) < limit and self._crowd()):
            task = asyncio.create_task(self._drain(runtime))
            self._tasks.add(task)

    def _crowd(self) -> bool:
        # Each batch costs a dozen round trips however small it is: a second one in flight
        # is worth it only for many callbacks.
        return len(self._waiting) >= min(self.max_batch, SECOND_BATCH)

    def _take(self) -> list[_Waiting]:
        """The next batch: waiting callbacks in order, leaving any whose number has a
        text in a batch in flight, or in a callback left waiting before it."""
        batch: list[_Waiting] = []
        held: set[str] = set()
        kept: list[_Waiting] = []
        for waiting in self._waiting:
            if len(batch) < self.max_batch and not any(
                s in held or self._busy[s] for s in waiting.senders
            ):
                batch.append(waiting)
            else:
                held |= waiting.senders
                kept.append(waiting)
        self._waiting = kept
        for waiting in batch:
            self._busy.update(waiting.senders)
        return batch

    async def _drain(self, runtime: Runtime) -> None:
        me = asyncio.current_task()
        assert me is not None
        try:
            # Left to the other task unless a crowd waits (it takes over once alone).
            while len(self._tasks) == 1 or self._crowd():
                batch = self._take()
                if not batch:
                    break
                try:
                    await self._record(runtime, batch)
                finally:
                    for waiting in batch:
                        self._busy.subtract(waiting.senders)
                    self._busy = +self._busy
        except BaseException as exc:
            # Cancelled (the loop is closing): nobody may wait for a batch that never comes.
            for waiting in self._waiting:
                _fail(waiting.future, exc)
            self._waiting.clear()
            raise
        finally:
            # At once, not by a done callback: the other task must see it is alone.
            self._tasks.discard(me)

    async def _record(self, runtime: Runtime, batch: list[_Waiting]) -> None:
        try:
            attempt_ids = await store_texts(runtime, [text for w in batch for text in w.texts])
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0].future, exc)
                try:
                    await self._hand_over(runtime)  # the replies of the batches before
                except Exception:
                    log.exception("enqueueing replies failed; the sweep enqueues them")
                return
            log.warning("recording %d replies together failed (%s); one by one", len(batch), exc)
            for waiting in batch:
                await self._record(runtime, [waiting])
            return
        except BaseException as exc:
            for waiting in batch:
                _fail(waiting.future, exc)
            raise
        self._owed += attempt_ids
        try:
            await self._hand_over(runtime)
        except Exception as exc:
            # Committed, so never tried again here; the sweep enqueues queued sends.
            for waiting in batch:
                _fail(waiting.future, exc)
            return
        for waiting in batch:
            if not waiting.future.done():
                waiting.future.set_result(None)

    async def _hand_over(self, runtime: Runtime) -> None:
        """Enqueue the owed replies once `SEND_BATCH` are owed, or when the batch just
        recorded is the last: its task alone in flight (still counted), nobody waiting."""
        if len(self._owed) >= SEND_BATCH or (len(self._tasks) == 1 and not self._waiting):
            owed, self._owed = self._owed, []
            await runtime.queue.enqueue_attempts(owed)


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
