"""Sending a claimed batch of attempts: a provider, its slots and one record per group.

A send job's claims (see `sending.claim_attempts`) are grouped by channel and route. For
each group, in the order `sending` documents for one attempt, but once for all of them:

1. Pick the provider once (circuit state in Redis). A half-open circuit's trial is one
   send; the rest of the group is picked for again after it.
2. Reserve the group's rate-limit slots in one script call (`RateLimiter.reserve_many`).
   Those whose slot lies ahead go back to the queue in one transaction, as a few jobs
   each deferred to the end of a short window of slots, not a job each.
3. Send: providers with a batch API get `send_many` in chunks of `flags.max_batch`; the
   others get `send` per message, concurrently in waves that start at one message and
   double while the provider keeps accepting, so a provider that starts failing costs
   about as many failures as sending one at a time would before its circuit opens.
4. The circuit hears each request's outcome, a run of successes as one success. When it
   opens, what is left of the group is picked for again (it fails over).
5. Every accepted send of the group is recorded in one transaction: the attempts marked
   sent and their calls' ladder clocks started (`ladder.note_deliveries`). Failures,
   refusals and retries take the one-attempt path (`sending._record`), which they rarely
   need to share.

A callback may report on a send before its group is recorded; it finds no attempt with
that provider message id and is retried by `worker.deliver_callback_job` until it does.
Simulated providers' callbacks are held back until the group is recorded
(`runtime.callbacks_held`), as a real provider's could not outrun its send's answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from channels.base import Message, Provider, SendError, SendResult
from dispatcher.bulk import update_rows
from dispatcher.circuit import OPEN
from dispatcher.ladder import note_deliveries
from dispatcher.models import Attempt, table_of
from dispatcher.queue import SEND_BATCH
from dispatcher.routing import pick_provider, route_for
from dispatcher.runtime import Runtime, callbacks_held
from dispatcher.sending import EARLY, Claim, build_message, recipient_free_at, record_result
from dispatcher.vocabulary import AttemptPurpose, AttemptStatus

log = logging.getLogger(__name__)
# Sends in flight at once to a provider without a batch API.
SEND_CONCURRENCY = 16
# Deferred sends whose slots fall this close together come back as one job, at the last
# slot: a little late for the first, never early for any.
DEFER_WINDOW = timedelta(milliseconds=200)

Outcome = SendResult | SendError
SENT_COLUMNS = (
    "id",
    "status",
    "sent_at",
    "provider",
    "provider_message_id",
    "body",
    "slot_at",
    "updated_at",
)


@dataclass
class Accepted:
    """A send the provider took, to be recorded."""

    claim: Claim
    provider: str
    body: str
    provider_message_id: str
    sent_at: datetime


@dataclass
class _Group:
    """One group's bookkeeping while it is sent."""

    accepted: list[Accepted]
    outcomes: Counter[str]


async def send_batch(runtime: Runtime, claims: Sequence[Claim]) -> Counter[str]:
    """Send claimed attempts; returns how many were sent, failed, deferred or in error."""
    groups: dict[tuple[str, tuple[str, ...], frozenset[str]], list[Claim]] = {}
    for claim in claims:
        route = tuple(route_for(runtime.settings, claim.channel, claim.address))
        groups.setdefault((claim.channel, route, frozenset(claim.skip)), []).append(claim)
    outcomes: Counter[str] = Counter()
    for (channel, route, skip), members in groups.items():
        group = _Group([], Counter())
        async with callbacks_held(runtime):
            await _send_and_record(runtime, channel, list(route), set(skip), members, group)
        outcomes.update(group.outcomes)
    return outcomes


async def _send_and_record(
    runtime: Runtime,
    channel: str,
    route: list[str],
    skip: set[str],
    claims: list[Claim],
    group: _Group,
) -> None:
    try:
        await _send_group(runtime, channel, route, skip, claims, group)
    except Exception:
        # What was not recorded stays `sending` until its lease runs out and the sweep
        # takes it up; the other groups go on.
        log.exception("%d %s sends failed; the sweep will take them up", len(claims), channel)
        unaccounted = len(claims) - sum(group.outcomes.values()) - len(group.accepted)
        group.outcomes["error"] += unaccounted
    if group.accepted:
        try:
            await record_accepted(runtime, group.accepted)
        except Exception:
            log.exception("%d sends were made but not recorded", len(group.accepted))
            group.outcomes["error"] += len(group.accepted)
        else:
            group.outcomes["sent"] += len(group.accepted)


async def _send_group(
    runtime: Runtime,
    channel: str,
    route: list[str],
    skip: set[str],
    claims: list[Claim],
    group: _Group,
) -> None:
    pending = claims
    while pending:
        now = runtime.clock.now()
        pick = await pick_provider(runtime.providers, runtime.breakers, channel, route, now, skip)
        if pick.provider is None:
            if pick.retry_at is not None:
                await _put_back(runtime, [(c, pick.retry_at, None, None) for c in pending])
                group.outcomes["deferred"] += len(pending)
            else:
                for claim in pending:
                    error = SendError(pick.reason)
                    outcome = await record_result(runtime, claim, None, None, None, error, None)
                    group.outcomes[outcome] += 1
            return
        take = pending[:1] if pick.trial else pending
        ready = await _admit(runtime, pick.provider, take, now, group)
        left = await _deliver(runtime, pick.provider, ready, group)
        pending = left + pending[len(take) :]


async def _admit(
    runtime: Runtime, provider: Provider, claims: list[Claim], now: datetime, group: _Group
) -> list[Claim]:
    """Those whose rate-limit slot (and recipient's allowance) is now; the rest go back."""
    channel = claims[0].channel
    slots: dict[int, datetime] = {}
    fresh = [c for c in claims if c.reserved_provider != provider.name or c.slot_at is None]
    rate = runtime.settings.providers.rate_per_s(provider.name, channel)
    reserved = await runtime.limiter.reserve_many(channel, provider.name, rate, now, len(fresh))
    slots.update(zip((c.attempt_id for c in fresh), reserved, strict=True))
    later: list[tuple[Claim, datetime, str | None, datetime | None]] = []
    ready: list[Claim] = []
    for claim in claims:
        slot = slots.get(claim.attempt_id) or claim.slot_at
        assert slot is not None
        if slot > now + EARLY:
            later.append((claim, slot, provider.name, slot))
            continue
        free_at = await recipient_free_at(runtime, claim, provider, now)
        if free_at > now:
            # The provider slot is given up; a new one is taken when this person may
            # have another message.
            later.append((claim, free_at, provider.name, None))
            continue
        ready.append(claim)
    await _put_back(runtime, later)
    group.outcomes["deferred"] += len(later)
    return ready


async def _deliver(
    runtime: Runtime, provider: Provider, claims: list[Claim], group: _Group
) -> list[Claim]:
    """Send to this provider; returns the claims left unsent because its circuit opened."""
    batch = provider.flags.max_batch
    wave = batch if batch > 1 else 1
    start = 0
    while start < len(claims):
        chunk = claims[start : start + wave]
        start += len(chunk)
        messages = [build_message(runtime, claim, provider) for claim in chunk]
        whole, results = await _request(provider, messages)
        sent_at = runtime.clock.now()
        circuits = await _tell_circuit(runtime, provider, results, whole)
        for claim, message, result, circuit in zip(chunk, messages, results, circuits, strict=True):
            if isinstance(result, SendResult):
                provider_id = result.provider_message_id
                group.accepted.append(
                    Accepted(claim, provider.name, message.text, provider_id, sent_at)
                )
                continue
            outcome = await record_result(
                runtime, claim, provider.name, message.text, None, result, circuit
            )
            group.outcomes[outcome] += 1
        if OPEN in circuits:
            log.warning("circuit opened for %s on %s", provider.name, chunk[0].channel)
            return claims[start:]
        if batch <= 1:
            # Double while every send is taken; back to one after a failure.
            clean = all(isinstance(result, SendResult) for result in results)
            wave = min(wave * 2, SEND_CONCURRENCY) if clean else 1
    return []


async def _request(provider: Provider, messages: list[Message]) -> tuple[bool, list[Outcome]]:
    """(whether one request failed as a whole, one outcome per message)."""
    if provider.flags.max_batch > 1:
        try:
            results = await provider.send_many(messages)
        except SendError as exc:
            return True, [exc] * len(messages)
        except Exception as exc:  # an unexpected provider failure must not lose the sends
            log.exception("provider %s failed", provider.name)
            return True, [SendError(str(exc) or type(exc).__name__, retryable=True)] * len(messages)
        if len(results) != len(messages):
            log.error(
                "provider %s answered %d of %d messages", provider.name, len(results), len(messages)
            )
            error = SendError("provider answered for fewer messages than sent", retryable=True)
            return True, [error] * len(messages)
        return False, list(results)
    return False, list(await asyncio.gather(*(_send_one(provider, m) for m in messages)))


async def _send_one(provider: Provider, message: Message) -> Outcome:
    try:
        return await provider.send(message)
    except SendError as exc:
        return exc
    except Exception as exc:  # an unexpected provider failure must not lose the attempt
        log.exception("provider %s failed", provider.name)
        return SendError(str(exc) or type(exc).__name__, retryable=True)


def _counts_against(result: Outcome) -> bool:
    # A refusal of this message (a flow-controlled number) says nothing of the
    # provider's health: only other retryable failures count against its circuit.
    return isinstance(result, SendError) and result.retryable and not result.other_provider


async def _tell_circuit(
    runtime: Runtime, provider: Provider, results: list[Outcome], whole: bool
) -> list[str | None]:
    """Report the outcomes in order, a run of successes as one; a request that failed as
    a whole is one failure. Returns each message's circuit state after its failure."""
    channel = provider.channel.value
    if whole:
        state = None
        if _counts_against(results[0]):
            state = await runtime.breakers.record_failure(
                channel, provider.name, runtime.clock.now()
            )
        return [state] * len(results)
    states: list[str | None] = []
    success_run = False
    for result in results:
        if isinstance(result, SendResult):
            success_run = True
            states.append(None)
            continue
        if success_run:
            await runtime.breakers.record_success(channel, provider.name)
            success_run = False
        if _counts_against(result):
            states.append(
                await runtime.breakers.record_failure(channel, provider.name, runtime.clock.now())
            )
        else:
            states.append(None)
    if success_run:
        await runtime.breakers.record_success(channel, provider.name)
    return states


async def record_accepted(runtime: Runtime, accepted: list[Accepted]) -> None:
    """Record accepted sends in one transaction: attempts sent (locked in id order), then
    their calls' ladder clocks started. If that fails (a deadlock), each is recorded on
    its own."""
    try:
        await _record_all(runtime, accepted)
    except SQLAlchemyError:
        log.warning("recording %d sends at once failed; recording them one by one", len(accepted))
        for sent in accepted:
            await record_result(
                runtime,
                sent.claim,
                sent.provider,
                sent.body,
                sent.provider_message_id,
                None,
                None,
            )


async def _record_all(runtime: Runtime, accepted: list[Accepted]) -> None:
    now = runtime.clock.now()
    ordered = sorted(accepted, key=lambda sent: sent.claim.attempt_id)
    delivered: dict[int, datetime] = {}
    for sent in ordered:
        claim = sent.claim
        if claim.purpose == AttemptPurpose.CALL and claim.call_id is not None:
            delivered[claim.call_id] = min(sent.sent_at, delivered.get(claim.call_id, sent.sent_at))
    async with runtime.db.transaction() as session:
        # one statement for the group, not one per send
        await update_rows(
            session,
            table_of(Attempt),
            SENT_COLUMNS,
            [
                (
                    sent.claim.attempt_id,
                    AttemptStatus.SENT,
                    sent.sent_at,
                    sent.provider,
                    sent.provider_message_id,
                    sent.body,
                    None,
                    now,
                )
                for sent in ordered
            ],
        )
        await note_deliveries(session, runtime.settings, delivered)


async def _put_back(
    runtime: Runtime, items: list[tuple[Claim, datetime, str | None, datetime | None]]
) -> None:
    """Return claimed rows to the queue, each due at its time (with the provider and
    slot it reserved, when given), in one transaction; then enqueue them as few jobs as
    the spread of their times allows (the sweep finds them if a job is lost)."""
    if not items:
        return
    now = runtime.clock.now()
    rows: list[dict[str, Any]] = []
    for claim, due_at, provider, slot_at in sorted(items, key=lambda item: item[0].attempt_id):
        row: dict[str, Any] = {
            "id": claim.attempt_id,
            "status": AttemptStatus.QUEUED,
            "due_at": due_at,
            "enqueued_at": None,
            "updated_at": now,
        }
        if provider is not None:
            row.update(provider=provider, slot_at=slot_at)
        rows.append(row)
    async with runtime.db.transaction() as session:
        await session.execute(update(Attempt), rows)
    ordered = sorted(items, key=lambda item: item[1])
    start = 0
    while start < len(ordered):
        first = ordered[start][1]
        stop = start + 1
        while (
            stop < len(ordered)
            and stop - start < SEND_BATCH
            and ordered[stop][1] - first <= DEFER_WINDOW
        ):
            stop += 1
        window = ordered[start:stop]
        due = window[-1][1]
        delay = runtime.clock.real_delay((due - now).total_seconds())
        ids = sorted(item[0].attempt_id for item in window)
        await runtime.queue.enqueue_attempts_later(ids, delay, f"{due.timestamp():.3f}")
        start = stop
