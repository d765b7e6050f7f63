"""Recording answers: every status change of a call, with its channel, raw text and time.

A responder's status can move on during a warning (收到 → 已部署 → 已转移 N 人, or 求助 at
any point): each change is a row in `answers`, and the call holds the latest. The first
answer stops the ladder and cancels the call's still-queued attempts; a late answer (after
door-knocking started) is recorded the same way and the task stays open. A help request
tells the supervisor at once. Supervisors may record an answer by hand (`recorded_by`,
`method`), kept apart from answers the responder gave. Reading reply text is in
`dispatcher.replies`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from dispatcher.audit import audit_row
from dispatcher.bulk import ids_value, in_ids_param, insert_columns, update_rows
from dispatcher.messages import Renderer
from dispatcher.models import (
    Answer,
    Attempt,
    AuditEvent,
    Call,
    Region,
    Responder,
    Warning,
    table_of,
)
from dispatcher.vocabulary import (
    ANSWERABLE_CALL_STATES,
    AttemptPurpose,
    AttemptStatus,
    CallState,
    Meaning,
)

# What answering changes on a call, as `AnswerRows.write` writes it (the id first).
CALL_ANSWER_COLUMNS = (
    "id",
    "state",
    "answered_at",
    "next_step_at",
    "answer_meaning",
    "status_at",
    "evacuated",
)


async def record_answer(
    session: AsyncSession,
    *,
    call: Call,
    meaning: str,
    channel: str,
    raw: str,
    now: datetime,
    provider: str | None = None,
    attempt_id: int | None = None,
    people: int | None = None,
    recorded_by: str | None = None,
    method: str | None = None,
    note: str | None = None,
    notify: list[Attempt],
    renderer: Renderer,
    rows: AnswerRows | None = None,
) -> bool:
    """Record one status change for one call; returns whether the call changed.

    With `rows`, the answer, its audit event and the call's new values are added to them
    rather than to the session, and a first answer's queued sends are left for
    `AnswerRows.write`: the caller, answering many calls, writes them all in a few
    statements before it commits.
    """
    answer = {
        "call_id": call.id,
        "responder_id": call.responder_id,
        "attempt_id": attempt_id,
        "channel": channel,
        "provider": provider,
        "raw": raw[:500],
        "meaning": meaning,
        "people": people if meaning == Meaning.EVACUATED else None,
        "recorded_by": recorded_by,
        "method": method,
        "note": note,
        "at": now,
    }
    if rows is None:
        session.add(Answer(**answer))
    else:
        rows.answers.append(answer)
    changed = (
        call.state in ANSWERABLE_CALL_STATES
        or call.answer_meaning != meaning
        or (meaning == Meaning.EVACUATED and call.evacuated != people)
    )
    late = call.answered_at is None and (
        call.state == CallState.UNANSWERED or call.door_knock_task_id is not None
    )
    first = call.state in ANSWERABLE_CALL_STATES
    help_asked = meaning == Meaning.HELP and call.answer_meaning != Meaning.HELP
    changes: dict[str, Any] = {"answer_meaning": meaning, "status_at": now}
    if first:
        changes.update(state=CallState.ANSWERED, answered_at=now, next_step_at=None)
    if meaning == Meaning.EVACUATED:
        changes["evacuated"] = people
    if rows is None:
        for name, value in changes.items():
            setattr(call, name, value)
        if first:
            await cancel_queued_sends(session, [call.id], now)
    else:
        rows.change_call(call, changes)
        if first:
            rows.first_answers.append(call.id)
    if help_asked:
        notice = await help_notice(session, call, now, renderer)
        if notice is not None:
            notify.append(notice)
    detail: dict[str, object] = {"meaning": meaning, "channel": channel}
    if people is not None:
        detail["people"] = people
    if late:
        detail["late"] = True
    audit = audit_row(
        now,
        "call.answered",
        warning_id=call.warning_id,
        call_id=call.id,
        actor=f"supervisor:{recorded_by}" if recorded_by else f"responder:{call.responder_id}",
        detail=detail,
    )
    if rows is None:
        session.add(AuditEvent(**audit))
    else:
        rows.audit.append(audit)
    return changed


@dataclass
class AnswerRows:
    """Answers to many calls, written together (ORM objects one by one cost more than
    the statements they save)."""

    answers: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    # Calls answered, by id: their new values are written by one statement, since the
    # ORM would update them one by one, each statement firing the figures' triggers.
    calls: dict[int, Call] = field(default_factory=dict)
    # Calls answered for the first time: their queued sends are cancelled.
    first_answers: list[int] = field(default_factory=list)
    # The calls' queued sends, when they were locked with the calls (`open_calls_of`):
    # those are cancelled by id, with no statement at all when there are none.
    queued: dict[int, list[int]] | None = None

    def change_call(self, call: Call, changes: dict[str, Any]) -> None:
        """Give `call` its new values, to be written by `write` (not by the ORM's flush)."""
        for name, value in changes.items():
            set_committed_value(call, name, value)
        self.calls[call.id] = call

    async def write(self, session: AsyncSession, now: datetime) -> None:
        if self.calls:
            await update_rows(
                session,
                table_of(Call),
                CALL_ANSWER_COLUMNS,
                [[getattr(c, name) for name in CALL_ANSWER_COLUMNS] for c in self.calls.values()],
            )
        # Each table by one statement: the ORM's bulk insert would split rows by which
        # columns are None, and an executemany runs the figures' triggers once per row.
        for table, rows in ((table_of(Answer), self.answers), (table_of(AuditEvent), self.audit)):
            if rows:
                await insert_columns(session, table, {k: [r[k] for r in rows] for k in rows[0]})
        if self.queued is None:
            await cancel_queued_sends(session, self.first_answers, now)
        elif ids := [a for c in self.first_answers for a in self.queued.pop(c, [])]:
            await session.execute(
                update(Attempt)
                .where(Attempt.id.in_(ids), Attempt.status == AttemptStatus.QUEUED)
                .values(status=AttemptStatus.CANCELLED, updated_at=now)
            )
        self.answers, self.audit, self.first_answers, self.calls = [], [], [], {}


async def cancel_queued_sends(session: AsyncSession, call_ids: list[int], now: datetime) -> None:
    """Answered calls need no more calling: their sends not yet taken are cancelled."""
    if not call_ids:
        return
    await session.execute(
        update(Attempt)
        .where(
            Attempt.call_id.in_(call_ids),
            Attempt.status == AttemptStatus.QUEUED,
            Attempt.purpose == AttemptPurpose.CALL,
        )
        .values(status=AttemptStatus.CANCELLED, updated_at=now)
    )


async def help_notice(
    session: AsyncSession, call: Call, now: datetime, renderer: Renderer
) -> Attempt | None:
    from dispatcher.fanout import sms_notice

    responder = await session.get(Responder, call.responder_id)
    if responder is None or responder.supervisor_id is None:
        return None
    warning = await session.get(Warning, call.warning_id)
    region = await session.get(Region, call.region_id)
    body = renderer.render("help_notice", responder=responder, region=region, warning=warning)
    return await sms_notice(
        session,
        to_responder_id=responder.supervisor_id,
        purpose=AttemptPurpose.NOTICE,
        body=body,
        warning_id=call.warning_id,
        call=call,
        now=now,
    )


@dataclass
class OpenCalls:
    """People's answerable calls, locked, and what answering them needs."""

    # Each call with its warning's headline, in id order.
    calls: list[tuple[Call, str]]
    # call id -> its queued sends (locked too), for `AnswerRows.queued`.
    queued: dict[int, list[int]]


async def open_calls_of(session: AsyncSession, responder_ids: list[int]) -> OpenCalls:
    """Calls these people can still answer (a bare '1' answers all of them), locked.

    Their queued sends are locked first, in id order: a send claim locks its attempts and
    then marks their call calling, so taking the calls first could deadlock with it. A
    send queued for one of them after that is skipped when claimed (its call answered)."""
    if not responder_ids:
        return OpenCalls([], {})
    lock_sends, lock_calls = _open_call_statements(session.get_bind().dialect.name == "postgresql")
    people = {"responder_ids": ids_value(session, responder_ids)}
    queued: dict[int, list[int]] = {}
    for attempt_id, call_id in await session.execute(lock_sends, people):
        if call_id is not None:  # joined to its call: never None
            queued.setdefault(call_id, []).append(attempt_id)
    rows = await session.execute(lock_calls, people)
    return OpenCalls([(call, headline) for call, headline in rows], queued)


@cache
def _open_call_statements(
    postgresql: bool,
) -> tuple[Select[int, int | None], Select[Call, str]]:
    """`open_calls_of`'s two statements, built once per back end: every batch of replies
    runs them, and building them cost as much as running them."""
    open_call = (
        # One statement text whatever the number of people (a list of parameters would be
        # a statement of its own, prepared again, for each batch size).
        in_ids_param(Call.responder_id, "responder_ids", postgresql),
        Warning.state == "active",
        Call.state.in_([*ANSWERABLE_CALL_STATES, CallState.ANSWERED]),
    )
    lock_sends = (
        select(Attempt.id, Attempt.call_id)
        .join(Call, Call.id == Attempt.call_id)
        .join(Warning, Warning.id == Call.warning_id)
        .where(
            *open_call,
            Attempt.status == AttemptStatus.QUEUED,
            Attempt.purpose == AttemptPurpose.CALL,
        )
        .order_by(Attempt.id)
        .with_for_update(of=Attempt)
    )
    lock_calls = (
        select(Call, Warning.headline)
        .join(Warning, Warning.id == Call.warning_id)
        .where(*open_call)
        .order_by(Call.id)
        .with_for_update(of=Call)
    )
    return lock_sends, lock_calls
