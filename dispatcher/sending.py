"""The send job for one attempt: claim it, pick a provider, wait for a slot, send, record.

1. Claim the row (queued -> sending) so a duplicate job does nothing.
2. Pick the provider: the route for the address (routing.py), skipping providers whose
   circuit is open or that refused this message. All open: defer until one may be tried.
3. Reserve a rate-limit slot at that provider (ratelimit.py), once; if it lies ahead,
   put the row back with that due time and defer the job until then. A provider that
   limits sends per recipient (recipient_limits.py) likewise defers the send until the
   person may have another.
4. Render the message for that provider (a one-way destination gets the answer link and
   no "reply 1") and send it, outside any transaction.
5. Record: sent, or failed with the provider's code. A retryable failure counts against
   the provider's circuit and is tried again as a new attempt after a backoff (at once
   when the circuit just opened, so it fails over); a refusal goes to the next provider;
   a permanent failure marks a bad contact (a call nothing can reach any more is then
   taken up by the sweep). A refusal that may pass later (a flow-controlled number) goes
   to the next provider on the route at once, or, with none left, back to this one later.
   A send the provider accepted starts the call's ladder clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import Channel, Message, Provider, SendError
from dispatcher.audit import record
from dispatcher.bulk import id_in
from dispatcher.circuit import OPEN
from dispatcher.fanout import mark_contact_bad, new_attempt
from dispatcher.ladder import note_delivery
from dispatcher.messages import call_template
from dispatcher.models import Attempt, Call, Warning
from dispatcher.retries import Deferred, backoff_s
from dispatcher.routing import pick_provider, route_for
from dispatcher.runtime import Runtime
from dispatcher.security import make_link_token
from dispatcher.vocabulary import (
    ANSWERABLE_CALL_STATES,
    AttemptPurpose,
    AttemptStatus,
    CallState,
)

log = logging.getLogger(__name__)
# A deferred job may run a moment before its slot by another clock; that is on time.
EARLY = timedelta(milliseconds=50)


def answer_url(runtime: Runtime, call_id: int) -> str:
    token = make_link_token(runtime.settings.app.secret_key, "a", call_id)
    return f"{runtime.settings.app.public_base_url.rstrip('/')}/a/{token}"


@dataclass
class Claim:
    """What the send needs from the claimed attempt row."""

    attempt_id: int
    channel: str
    address: str
    purpose: str
    try_number: int
    responder_id: int | None
    call_id: int | None
    body: str | None
    reserved_provider: str | None
    slot_at: datetime | None
    skip: set[str] = field(default_factory=set)
    warning: Warning | None = None
    minutes: int = 0
    code: str | None = None
    template: str = ""


async def _claim_attempt(runtime: Runtime, attempt_id: int) -> Claim | None:
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        attempt = await session.get(Attempt, attempt_id, with_for_update=True)
        if attempt is None:
            return None
        call = await session.get(Call, attempt.call_id) if attempt.call_id else None
        return await _claim_loaded(runtime, session, attempt, call, now)


async def claim_attempts(runtime: Runtime, attempt_ids: list[int]) -> list[Claim]:
    """Claim a batch of attempts in one transaction (locked in id order); those not due,
    gone or no longer needed are left out, as `send_attempt` would skip them.

    Rows are read and written as columns and set-wise updates, not ORM objects: a worker
    claims 300,000 sends for a red warning of 100,000 people, and loading and flushing
    each attempt and call as an object was a fifth of its time."""
    now = runtime.clock.now()
    claims: list[Claim] = []
    skipped: list[int] = []
    pending_calls: list[int] = []
    async with runtime.db.transaction() as session:
        attempts = (
            await session.execute(
                select(*CLAIM_COLUMNS)
                .where(id_in(session, Attempt.id, attempt_ids))
                .order_by(Attempt.id)
                .with_for_update()
            )
        ).all()
        call_ids = sorted({a.call_id for a in attempts if a.call_id is not None})
        calls = (
            {
                call.id: call
                for call in await session.execute(
                    select(
                        Call.id,
                        Call.state,
                        Call.answered_at,
                        Call.code,
                        Call.previous_call_id,
                        Call.warning_id,
                    ).where(id_in(session, Call.id, call_ids))
                )
            }
            if call_ids
            else {}
        )
        warnings: dict[int, Warning] = {}
        for attempt in attempts:
            call = calls.get(attempt.call_id) if attempt.call_id is not None else None
            verdict = claim_verdict(attempt, call, now)
            if verdict is None:
                continue
            if verdict == AttemptStatus.SKIPPED:
                skipped.append(attempt.id)
                continue
            warning = None
            if call is not None and attempt.purpose == AttemptPurpose.CALL:
                if call.warning_id not in warnings:
                    found = await session.get(Warning, call.warning_id)
                    assert found is not None
                    warnings[call.warning_id] = found
                warning = warnings[call.warning_id]
                if call.state == CallState.PENDING:
                    pending_calls.append(call.id)
            claims.append(new_claim(runtime, attempt, call, warning))
        await _set_status(session, skipped, AttemptStatus.SKIPPED, now)
        await _set_status(session, [c.attempt_id for c in claims], AttemptStatus.SENDING, now)
        if pending_calls:
            # locked in id order, as every other writer of many calls locks them
            locked = (
                select(Call.id)
                .where(id_in(session, Call.id, sorted(set(pending_calls))))
                .where(Call.state == CallState.PENDING)
                .order_by(Call.id)
                .with_for_update()
            )
            await session.execute(
                update(Call)
                .where(Call.id.in_(locked))
                .values(state=CallState.CALLING)
                .execution_options(synchronize_session=False)
            )
    return claims


CLAIM_COLUMNS = (
    Attempt.id,
    Attempt.channel,
    Attempt.address,
    Attempt.purpose,
    Attempt.try_number,
    Attempt.responder_id,
    Attempt.call_id,
    Attempt.body,
    Attempt.provider,
    Attempt.slot_at,
    Attempt.skip_providers,
    Attempt.status,
    Attempt.due_at,
)


async def _set_status(
    session: AsyncSession, attempt_ids: list[int], status: str, now: datetime
) -> None:
    if attempt_ids:
        await session.execute(
            update(Attempt)
            .where(id_in(session, Attempt.id, attempt_ids))
            .values(status=status, updated_at=now)
            .execution_options(synchronize_session=False)
        )


def claim_verdict(attempt: Any, call: Any | None, now: datetime) -> str | None:
    """What a claim does with an attempt (a row or an object with the attempt's columns;
    its call likewise): None leaves it (not queued, or not yet due), `skipped` for a
    call nobody needs to hear any more, `sending` to send it."""
    if attempt.status != AttemptStatus.QUEUED or attempt.due_at > now + EARLY:
        return None
    if attempt.purpose == AttemptPurpose.CALL and (
        call is None or call.state not in ANSWERABLE_CALL_STATES or call.answered_at
    ):
        return AttemptStatus.SKIPPED
    return AttemptStatus.SENDING


def new_claim(runtime: Runtime, attempt: Any, call: Any | None, warning: Warning | None) -> Claim:
    """What the send of a claimed attempt needs (attempt and call as in `claim_verdict`;
    `warning` is the call's, given for a call's own send)."""
    claim = Claim(
        attempt_id=attempt.id,
        channel=attempt.channel,
        address=attempt.address,
        purpose=attempt.purpose,
        try_number=attempt.try_number,
        responder_id=attempt.responder_id,
        call_id=attempt.call_id,
        body=attempt.body,
        reserved_provider=attempt.provider,
        slot_at=attempt.slot_at,
        skip=set(filter(None, (attempt.skip_providers or "").split(","))),
    )
    if call is not None and warning is not None:
        claim.warning = warning
        claim.minutes = int(runtime.settings.policy_for(warning.level).answer_within_min)
        claim.code = call.code
        claim.template = call_template(attempt.channel, call.previous_call_id)
    return claim


async def _claim_loaded(
    runtime: Runtime, session: AsyncSession, attempt: Attempt, call: Call | None, now: datetime
) -> Claim | None:
    """Mark a locked, queued, due attempt `sending` and say what its send needs."""
    verdict = claim_verdict(attempt, call, now)
    if verdict is None:
        return None
    if verdict == AttemptStatus.SKIPPED:
        attempt.status, attempt.updated_at = AttemptStatus.SKIPPED, now
        return None
    warning = None
    if call is not None and attempt.purpose == AttemptPurpose.CALL:
        warning = await session.get(Warning, call.warning_id)
        assert warning is not None
        if call.state == CallState.PENDING:
            call.state = CallState.CALLING
    attempt.status, attempt.updated_at = AttemptStatus.SENDING, now
    return new_claim(runtime, attempt, call, warning)


def build_message(runtime: Runtime, claim: Claim, provider: Provider) -> Message:
    """The message as this provider will carry it."""
    link = answer_url(runtime, claim.call_id) if claim.call_id else None
    text = claim.body or ""
    if claim.warning is not None and link is not None:
        text = runtime.renderer.render(
            claim.template or f"call_{claim.channel}",
            warning=claim.warning,
            minutes=claim.minutes,
            answer_url=link,
            two_way=provider.flags.two_way(claim.address),
            try_number=claim.try_number,
            code=claim.code,
        )
    return Message(
        channel=Channel(claim.channel),
        to=claim.address,
        text=text,
        reference=f"attempt:{claim.attempt_id}",
        recipient_key=f"responder:{claim.responder_id}",
        answer_url=link,
        expects_answer=claim.purpose == AttemptPurpose.CALL,
        repeat=2 if claim.channel == "voice" else 1,
    )


async def _put_back(
    runtime: Runtime,
    claim: Claim,
    due_at: datetime,
    provider: str | None = None,
    slot_at: datetime | None = None,
) -> None:
    """Return a claimed row to the queue, due later (the sweep finds it if the job is lost)."""
    async with runtime.db.transaction() as session:
        attempt = await session.get(Attempt, claim.attempt_id, with_for_update=True)
        assert attempt is not None
        attempt.status, attempt.due_at = AttemptStatus.QUEUED, due_at
        attempt.enqueued_at, attempt.updated_at = None, runtime.clock.now()
        if provider is not None:
            attempt.provider, attempt.slot_at = provider, slot_at


def _deferred(runtime: Runtime, until: datetime, now: datetime) -> Deferred:
    return Deferred(runtime.clock.real_delay((until - now).total_seconds()))


async def recipient_free_at(
    runtime: Runtime, claim: Claim, provider: Provider, now: datetime
) -> datetime:
    """When this person may have another message through a provider that limits sends
    per recipient (now, if it does not or they may)."""
    if not provider.flags.recipient_limits:
        return now
    return await runtime.recipients.admit(
        claim.channel,
        provider.name,
        claim.address,
        provider.flags.recipient_limits,
        f"attempt:{claim.attempt_id}",
        now,
    )


async def send_attempt(runtime: Runtime, attempt_id: int) -> str:
    """Send one attempt; returns "sent", "failed" or "skipped", or raises `Deferred`."""
    claim = await _claim_attempt(runtime, attempt_id)
    if claim is None:
        return "skipped"
    return await send_claimed(runtime, claim)


async def send_claimed(runtime: Runtime, claim: Claim) -> str:
    """Send an attempt already claimed; returns "sent" or "failed", or raises `Deferred`."""
    now = runtime.clock.now()
    route = route_for(runtime.settings, claim.channel, claim.address)
    pick = await pick_provider(
        runtime.providers, runtime.breakers, claim.channel, route, now, claim.skip
    )
    if pick.provider is None:
        if pick.retry_at is not None:
            await _put_back(runtime, claim, pick.retry_at)
            raise _deferred(runtime, pick.retry_at, now)
        return await record_result(runtime, claim, None, None, None, SendError(pick.reason), None)
    provider = pick.provider
    slot = claim.slot_at if claim.reserved_provider == provider.name else None
    if slot is None:
        rate = runtime.settings.providers.rate_per_s(provider.name, claim.channel)
        slot = await runtime.limiter.reserve(claim.channel, provider.name, rate, now)
    if slot > now + EARLY:
        await _put_back(runtime, claim, slot, provider.name, slot)
        raise _deferred(runtime, slot, now)
    free_at = await recipient_free_at(runtime, claim, provider, now)
    if free_at > now:
        # This person had all the provider lets through for now; the provider slot is
        # given up and a new one taken when the recipient may have another.
        await _put_back(runtime, claim, free_at, provider.name, None)
        raise _deferred(runtime, free_at, now)

    message = build_message(runtime, claim, provider)
    error: SendError | None = None
    provider_id = None
    try:
        provider_id = (await provider.send(message)).provider_message_id
    except SendError as exc:
        error = exc
    except Exception as exc:  # an unexpected provider failure must not lose the attempt
        log.exception("provider %s failed", provider.name)
        error = SendError(str(exc) or type(exc).__name__, retryable=True)
    circuit = None
    if error is None:
        await runtime.breakers.record_success(claim.channel, provider.name)
    elif error.retryable and not error.other_provider:
        # A refusal of this message (a flow-controlled number) says nothing of the
        # provider's health: only other retryable failures count against its circuit.
        circuit = await runtime.breakers.record_failure(
            claim.channel, provider.name, runtime.clock.now()
        )
        if circuit == OPEN:
            log.warning("circuit opened for %s on %s", provider.name, claim.channel)
    text = message.text
    return await record_result(runtime, claim, provider.name, text, provider_id, error, circuit)


async def record_result(
    runtime: Runtime,
    claim: Claim,
    provider: str | None,
    body: str | None,
    provider_id: str | None,
    error: SendError | None,
    circuit: str | None,
) -> str:
    """Store a send's outcome and enqueue the retry it calls for; returns the outcome."""
    outcome, retry = await _store_result(
        runtime, claim, provider, body, provider_id, error, circuit
    )
    if retry is not None:
        retry_id, due = retry
        wait = (due - runtime.clock.now()).total_seconds()
        await runtime.queue.enqueue_attempt(retry_id, runtime.clock.real_delay(wait))
    return outcome


async def _store_result(
    runtime: Runtime,
    claim: Claim,
    provider: str | None,
    body: str | None,
    provider_id: str | None,
    error: SendError | None,
    circuit: str | None,
) -> tuple[str, tuple[int, datetime] | None]:
    now = runtime.clock.now()
    async with runtime.db.transaction() as session:
        attempt = await session.get(Attempt, claim.attempt_id, with_for_update=True)
        assert attempt is not None
        if error is not None and attempt.call_id is not None:
            # Lock order everywhere: attempt, then its call, then contacts; the audit row
            # below references the call, and PostgreSQL would otherwise deadlock two
            # failures of one call against each other.
            await session.get(Call, attempt.call_id, with_for_update=True)
        attempt.provider, attempt.slot_at, attempt.updated_at = provider, None, now
        if body is not None:
            attempt.body = body
        if error is None:
            attempt.status, attempt.sent_at = AttemptStatus.SENT, now
            attempt.provider_message_id = provider_id
            await note_delivery(session, runtime.settings, attempt, now)
            return "sent", None
        attempt.status = AttemptStatus.FAILED
        attempt.error_code, attempt.error_message = error.code, error.message
        record(
            session,
            now,
            "attempt.failed",
            warning_id=attempt.warning_id,
            call_id=attempt.call_id,
            detail={"attempt": attempt.id, "provider": provider, "error": error.message},
        )
        if error.contact_bad:
            await mark_contact_bad(session, attempt.address)
        retry = _retry_of(runtime, attempt, provider, error, circuit, now)
        if retry is not None:
            session.add(retry)
            await session.flush()
            return "failed", (retry.id, retry.due_at)
        # A call nothing can reach any more is taken up by the sweep (undeliverable calls).
        return "failed", None


def _retry_of(
    runtime: Runtime,
    attempt: Attempt,
    provider: str | None,
    error: SendError,
    circuit: str | None,
    now: datetime,
) -> Attempt | None:
    """The next attempt after a failure, or None when trying again cannot help."""
    worker = runtime.settings.worker
    skip = set(filter(None, (attempt.skip_providers or "").split(",")))
    others_left = provider is not None and any(
        name not in skip | {provider} and runtime.providers.get(attempt.channel, name)
        for name in route_for(runtime.settings, attempt.channel, attempt.address)
    )
    if error.other_provider and provider is not None and (others_left or not error.retryable):
        skip.add(provider)
        due, try_number = now, attempt.try_number
    elif error.retryable and attempt.try_number < worker.retry_max_tries:
        wait = backoff_s(attempt.try_number, worker.retry_base_s, worker.retry_max_backoff_s)
        # The circuit just opened: the next provider on the route can take it now.
        due = now if circuit == OPEN else now + timedelta(seconds=wait)
        try_number = attempt.try_number + 1
    else:
        return None
    retry = new_attempt(
        call=None,
        warning_id=attempt.warning_id,
        responder_id=attempt.responder_id,
        purpose=attempt.purpose,
        channel=attempt.channel,
        address=attempt.address,
        now=due,
        body=attempt.body if attempt.purpose != AttemptPurpose.CALL else None,
        try_number=try_number,
    )
    retry.call_id = attempt.call_id
    retry.skip_providers = ",".join(sorted(skip)) or None
    retry.updated_at = now
    return retry
