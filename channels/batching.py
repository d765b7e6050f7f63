"""How a provider with a batch API splits `send_many` into requests and reads them back.

Shared by the domestic SMS providers, whose APIs take many numbers per request but answer
per request, not always per number:

* `distinct_chunks` cuts messages into requests of at most `size` in which no number
  appears twice: a receipt names the request's id and the number (Aliyun) or is matched
  by number (Tencent), so one number twice in a request could not be told apart.
* `send_requests` sends the requests concurrently and gives one outcome per message. A
  request refused for something one of its numbers or texts did (an illegal number, a
  flow-controlled one, too many numbers) says nothing about which one, so it is split in
  halves and sent again until each refusal lands on its own message: nothing was sent
  by the refused request, and each message ends with the outcome a single send would
  have had. Only when every message failed with one and the same request-level error
  does it raise that error, as `Provider.send_many` promises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TypeVar

from channels.base import Message, SendError, SendResult

Outcome = SendResult | SendError
K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)

# Requests of one batch in flight at once (the core's rate limit paces the messages).
CONCURRENT_REQUESTS = 8


def distinct_chunks(
    indices: Sequence[int], size: int, number_of: Callable[[int], K]
) -> list[list[int]]:
    """`indices` in order, cut into chunks of at most `size` with no number twice."""
    chunks: list[list[int]] = []
    numbers: list[set[K]] = []
    for index in indices:
        number = number_of(index)
        for chunk, seen in zip(chunks, numbers, strict=True):
            if len(chunk) < size and number not in seen:
                chunk.append(index)
                seen.add(number)
                break
        else:
            chunks.append([index])
            numbers.append({number})
    return chunks


SendRequest = Callable[[list[Message]], Awaitable[list[Outcome]]]


async def send_requests(
    messages: Sequence[Message],
    requests: list[list[int]],
    send: SendRequest,
    splittable: Callable[[SendError], bool],
) -> list[Outcome]:
    """Send each request (indices into `messages`) with `send`; one outcome per message."""
    gate = asyncio.Semaphore(CONCURRENT_REQUESTS)
    outcomes: list[Outcome | None] = [None] * len(messages)

    async def one(batch: list[Message]) -> list[Outcome]:
        try:
            async with gate:
                return await send(batch)
        except SendError as error:
            if len(batch) > 1 and splittable(error):
                half = len(batch) // 2
                first, second = await asyncio.gather(one(batch[:half]), one(batch[half:]))
                return first + second
            return [error] * len(batch)
        except Exception as exc:
            # Other requests of the batch may have been taken: their outcomes must not
            # be lost to this one's surprise (the core would send them all again).
            log.exception("a batch request failed unexpectedly")
            return [SendError(str(exc) or type(exc).__name__, retryable=True)] * len(batch)

    async def request(indices: list[int]) -> None:
        for index, outcome in zip(indices, await one([messages[i] for i in indices]), strict=True):
            outcomes[index] = outcome

    await asyncio.gather(*(request(indices) for indices in requests))
    done = [outcome for outcome in outcomes if outcome is not None]
    assert len(done) == len(messages), "every message belongs to one request"
    first = done[0] if done else None
    if isinstance(first, SendError) and all(outcome is first for outcome in done):
        raise first
    return done
