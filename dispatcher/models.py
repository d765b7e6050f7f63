"""SQLAlchemy models: the directory, the warnings and everything that happens to them.

Directory: `Region` (the place tree, with a materialised `path` of codes for subtree
queries), `Responder` with `Contact`s and `Duty`s, `Speaker`.
Warnings: `Warning`, its `Call`s (one per responder), each call's `Attempt`s (one try on
one channel) and `Answer`s (every status change), the warning's `Broadcast`s,
`DoorKnockTask`s (with the `Household`s they visit, `TaskHousehold`), the `LadderNotice`s
waiting to go out as digests, the `InboxMessage`s nobody's call took, and `AuditEvent`s.
Figures: `CallCount`, `FunnelCount` and `CurveCount`, delta rows that triggers write
beside every change of a call, a call's attempt or an answer (see `dispatcher.counters`).
Dashboard: `User`s who log in (admin, supervisor of a region subtree, viewer).
The Alembic migrations in `alembic/versions/` create exactly these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from dispatcher.db import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core inserts of many rows (no ORM bookkeeping per row)."""
    return Base.metadata.tables[model.__tablename__]


class Region(Base):
    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"))
    # "/<county code>/<township code>/.../<own code>/": a subtree is a prefix match.
    path: Mapped[str] = mapped_column(String(400), index=True)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    geometry: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    parent: Mapped[Region | None] = relationship(remote_side=[id])


class Responder(Base):
    __tablename__ = "responders"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(32))
    backup_id: Mapped[int | None] = mapped_column(ForeignKey("responders.id"))
    supervisor_id: Mapped[int | None] = mapped_column(ForeignKey("responders.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    contacts: Mapped[list[Contact]] = relationship(
        back_populates="responder", cascade="all, delete-orphan", order_by="Contact.position"
    )
    duties: Mapped[list[Duty]] = relationship(
        back_populates="responder", cascade="all, delete-orphan"
    )

    def addresses(self, kind: str) -> list[str]:
        return [c.value for c in self.contacts if c.kind == kind and not c.bad]


class Contact(Base):
    """A phone number or a WeCom user id of a responder."""

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("responder_id", "kind", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    responder_id: Mapped[int] = mapped_column(ForeignKey("responders.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # phone | wecom
    value: Mapped[str] = mapped_column(String(64), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    bad: Mapped[bool] = mapped_column(Boolean, default=False)

    responder: Mapped[Responder] = relationship(back_populates="contacts")


class Duty(Base):
    """A responder answers for a region."""

    __tablename__ = "duties"
    __table_args__ = (UniqueConstraint("responder_id", "region_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    responder_id: Mapped[int] = mapped_column(ForeignKey("responders.id", ondelete="CASCADE"))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)

    responder: Mapped[Responder] = relationship(back_populates="duties")
    region: Mapped[Region] = relationship()


class Speaker(Base):
    __tablename__ = "speakers"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(200))

    region: Mapped[Region] = relationship()


class Warning(Base):
    """One CAP alert as received. `raw_body` holds the exact bytes posted (for audit and
    re-processing); an Update points at the warning it `supersedes`."""

    __tablename__ = "warnings"
    __table_args__ = (
        UniqueConstraint("sender", "identifier"),
        Index("ix_warnings_state_expires", "state", "expires"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sender: Mapped[str] = mapped_column(String(200))
    identifier: Mapped[str] = mapped_column(String(200))
    api_sender: Mapped[str] = mapped_column(String(64))
    sent: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    msg_type: Mapped[str] = mapped_column(String(16))
    references: Mapped[str | None] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str | None] = mapped_column(String(16))
    urgency: Mapped[str | None] = mapped_column(String(16))
    certainty: Mapped[str | None] = mapped_column(String(16))
    headline: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    instruction: Mapped[str] = mapped_column(Text, default="")
    sender_name: Mapped[str] = mapped_column(String(200), default="")
    onset: Mapped[datetime | None]
    expires: Mapped[datetime | None]
    areas: Mapped[list[Any]] = mapped_column(JSON)
    source_format: Mapped[str] = mapped_column(String(8))  # cap | json
    raw_payload: Mapped[str] = mapped_column(Text)
    raw_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    content_type: Mapped[str | None] = mapped_column(String(100))
    # status Exercise: a drill, counted apart from real warnings
    is_drill: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    signal: Mapped[str | None] = mapped_column(String(32))  # 暴雨, 台风... (dispatcher.signals)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("warnings.id"), index=True)
    # active | superseded | cancelled | expired (vocabulary.WarningState)
    state: Mapped[str] = mapped_column(String(16), default="active")
    notes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    received_at: Mapped[datetime] = mapped_column(index=True)
    # When its last call was written; empty while a big fan-out is still being written
    # (dispatcher.fanout_stages), whose writer holds it until `fanout_lease_until`.
    fanned_out_at: Mapped[datetime | None]
    fanout_lease_until: Mapped[datetime | None]


class Call(Base):
    """One warning addressed to one responder: the unit that must be answered."""

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("warning_id", "responder_id"),
        # Only calls whose ladder has started: a big warning's calls are written without
        # a next step, and need no entry until a provider accepts a send.
        Index(
            "ix_calls_due",
            "next_step_at",
            postgresql_where=text("next_step_at IS NOT NULL"),
            sqlite_where=text("next_step_at IS NOT NULL"),
        ),
        Index("ix_calls_warning_state", "warning_id", "state"),
        # the page's people lists walk a warning's calls region by region
        Index("ix_calls_warning_region", "warning_id", "region_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign keys, as on attempts: their per-row checks were two thirds of the cost
    # of writing a big warning's calls (migration 0013). The dispatcher writes calls
    # only for warnings, responders and regions it has just read, and deletes none of
    # them; tests check that every call agrees with what it names.
    warning_id: Mapped[int]
    responder_id: Mapped[int]
    region_id: Mapped[int]
    origin: Mapped[str] = mapped_column(String(16), default="duty")  # duty | backup
    backup_for_call_id: Mapped[int | None]
    state: Mapped[str] = mapped_column(String(16))
    escalation_step: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime]
    next_step_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    # The latest status (received | help | on_duty | evacuated); `answers` holds every change.
    answer_meaning: Mapped[str | None] = mapped_column(String(16))
    evacuated: Mapped[int | None] = mapped_column(Integer)
    status_at: Mapped[datetime | None]
    # Short answer code within the responder's open calls ("K7"): `1 K7` answers this one.
    code: Mapped[str | None] = mapped_column(String(8))
    # First send a provider accepted: the ladder's clock starts here, not at the warning.
    delivered_at: Mapped[datetime | None]
    door_knock_task_id: Mapped[int | None]
    # the same person's call on the warning this one's Update superseded
    previous_call_id: Mapped[int | None]


class FanoutRange(Base):
    """Calls of a big warning, written in one stage, whose first sends a worker has still
    to write (`dispatcher.fanout_stages`): until `written_at` is set, their calls have no
    sends yet, and are not taken for undeliverable."""

    __tablename__ = "fanout_ranges"

    id: Mapped[int] = mapped_column(primary_key=True)
    warning_id: Mapped[int] = mapped_column(ForeignKey("warnings.id"), index=True)
    first_call_id: Mapped[int]
    last_call_id: Mapped[int]
    # when the sends are due (later than the calls in quiet hours)
    due_at: Mapped[datetime]
    enqueued_at: Mapped[datetime]
    written_at: Mapped[datetime | None]


class CallAgainBatch(Base):
    """Due calls of one warning whose "call again" sends a worker has still to write
    (`dispatcher.call_again`): the sweep moves a big chunk's ladders on and leaves the
    sends to this record; until `written_at` is set, those calls' new sends are owed."""

    __tablename__ = "call_again_batches"
    __table_args__ = (
        # what the sweep looks for: batches whose job may have been lost
        Index(
            "ix_call_again_batches_unwritten",
            "enqueued_at",
            postgresql_where=text("written_at IS NULL"),
            sqlite_where=text("written_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    warning_id: Mapped[int] = mapped_column(ForeignKey("warnings.id"), index=True)
    # JSON lists: the calls to send to again, and the step's channels in its order
    call_ids: Mapped[str] = mapped_column(Text)
    channels: Mapped[str] = mapped_column(String(200))
    try_number: Mapped[int] = mapped_column(Integer)
    # when the step ran: the sends are due then
    due_at: Mapped[datetime]
    enqueued_at: Mapped[datetime]
    written_at: Mapped[datetime | None]


class Attempt(Base):
    """One try of sending one message on one channel through one provider."""

    __tablename__ = "attempts"
    __table_args__ = (
        # What the sweep requeues: queued sends not handed to the queue lately. Only
        # queued versions of a row are indexed, and by when they were enqueued, so the
        # sweep reads none of the hundreds of thousands just enqueued for a big warning
        # (indexed by (status, due_at), it walked them all on every sweep; 0023).
        Index(
            "ix_attempts_requeue",
            "enqueued_at",
            "due_at",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        # Sends whose worker may have died holding them (the sweep's send lease).
        Index(
            "ix_attempts_sending",
            "updated_at",
            postgresql_where=text("status = 'sending'"),
            sqlite_where=text("status = 'sending'"),
        ),
        # Receipts name a message a provider accepted; queued sends have no reference.
        Index(
            "ix_attempts_provider_ref",
            "provider",
            "provider_message_id",
            postgresql_where=text("provider_message_id IS NOT NULL"),
            sqlite_where=text("provider_message_id IS NOT NULL"),
        ),
        # A call's sends in one state (an answer cancels those still queued): with only
        # `call_id` indexed, PostgreSQL ANDed in the (status, due_at) index there was,
        # whose `queued` entries numbered every send of a big warning until vacuum, and
        # took ~10 ms a call.
        Index("ix_attempts_call_status", "call_id", "status"),
        # A warning's sends in one state: the sweep's undeliverable check reads the
        # failed sends of active warnings only, never the whole history (0020).
        Index("ix_attempts_warning_status", "warning_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign keys: their per-row checks were half the cost of writing a big
    # warning's first attempts (migration 0008). The dispatcher alone writes attempts,
    # with their call's warning and responder, and deletes no warning, call or responder.
    warning_id: Mapped[int | None]
    call_id: Mapped[int | None]
    responder_id: Mapped[int | None]
    purpose: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # The provider's own word for the last status it reported ("undelivered", "busy"...).
    provider_status: Mapped[str | None] = mapped_column(String(32))
    # Providers that refused this message (comma-separated); failover tries the others.
    skip_providers: Mapped[str | None] = mapped_column(String(200))
    try_number: Mapped[int] = mapped_column(Integer, default=1)
    due_at: Mapped[datetime]
    # The rate-limit slot reserved for this send at `provider` (reserved once, kept).
    slot_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    # When the provider last reported on it (delivery receipt, call status).
    reported_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class Answer(Base):
    __tablename__ = "answers"
    # A call's answers in id order: its first answer is one index probe (the funnel's
    # trigger asks for it on every answer written).
    __table_args__ = (Index("ix_answers_call_first", "call_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"))
    responder_id: Mapped[int] = mapped_column(ForeignKey("responders.id"))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id"))
    channel: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(32))
    raw: Mapped[str] = mapped_column(Text)
    meaning: Mapped[str] = mapped_column(String(16))
    people: Mapped[int | None] = mapped_column(Integer)  # 4 N: N people evacuated
    # Set when a supervisor recorded the answer by hand: who, and how they learnt it.
    recorded_by: Mapped[str | None] = mapped_column(String(100))
    method: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


class Broadcast(Base):
    __tablename__ = "broadcasts"
    __table_args__ = (UniqueConstraint("warning_id", "speaker_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    warning_id: Mapped[int] = mapped_column(ForeignKey("warnings.id"), index=True)
    speaker_id: Mapped[int] = mapped_column(ForeignKey("speakers.id"))
    status: Mapped[str] = mapped_column(String(16), index=True)
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(100), index=True)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    try_number: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    due_at: Mapped[datetime]
    slot_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    reported_at: Mapped[datetime | None]

    speaker: Mapped[Speaker] = relationship()


class DoorKnockTask(Base):
    """Work on the ground: go to a region whose responders or speakers stayed silent."""

    __tablename__ = "door_knock_tasks"
    __table_args__ = (Index("ix_tasks_warning_region", "warning_id", "region_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    warning_id: Mapped[int] = mapped_column(ForeignKey("warnings.id"))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    reason: Mapped[str] = mapped_column(String(16))  # silent | speaker_failed
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("responders.id"))
    status: Mapped[str] = mapped_column(String(16))
    notes: Mapped[str] = mapped_column(Text, default="")
    # Short code within the assignee's open tasks: `完成 K7` finishes this one by SMS.
    code: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Not accepted by then: the supervisor is told (once, at escalated_at).
    escalate_at: Mapped[datetime | None] = mapped_column(index=True)
    escalated_at: Mapped[datetime | None]

    region: Mapped[Region] = relationship()
    assignee: Mapped[Responder | None] = relationship()


class Household(Base):
    """A household to check on a door-knock round (`households.csv`)."""

    __tablename__ = "households"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)
    address: Mapped[str] = mapped_column(String(200))
    people: Mapped[int] = mapped_column(Integer, default=1)
    flags: Mapped[list[Any]] = mapped_column(JSON, default=list)  # e.g. ["独居老人"]

    region: Mapped[Region] = relationship()


class TaskHousehold(Base):
    """What the door-knocker found at one household: reached, not home, evacuated."""

    __tablename__ = "task_households"
    __table_args__ = (UniqueConstraint("task_id", "household_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("door_knock_tasks.id"), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    mark: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]


class LadderNotice(Base):
    """A silent call someone up the line must hear about; sent as one digest per person."""

    __tablename__ = "ladder_notices"
    __table_args__ = (
        UniqueConstraint("call_id", "kind", "recipient_id"),
        Index("ix_ladder_notices_pending", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # supervisor | up
    recipient_id: Mapped[int] = mapped_column(ForeignKey("responders.id"))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id"))


class InboxMessage(Base):
    """An SMS nobody's open call could take: kept for supervisors, never dropped."""

    __tablename__ = "inbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    phone: Mapped[str] = mapped_column(String(32))
    responder_id: Mapped[int | None] = mapped_column(ForeignKey("responders.id"))
    text: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(16))  # unknown_number | no_open_call | unclear
    provider: Mapped[str | None] = mapped_column(String(32))


class SeenText(Base):
    """An inbound text a provider named by its own id, taken once: a provider that sends
    the same callback again (a retry after a timeout or a lost response) is answered
    without its text being taken a second time."""

    __tablename__ = "seen_texts"
    __table_args__ = (UniqueConstraint("provider", "provider_message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_message_id: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime]


class AuditEvent(Base):
    """Every state change, on record: 有叫有应有记录."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(40))
    # No foreign keys: their per-row checks tripled the cost of a sweep's audit rows
    # (migration 0017). The dispatcher alone writes audit rows, beside what they record,
    # and deletes no warning or call.
    warning_id: Mapped[int | None] = mapped_column(index=True)
    call_id: Mapped[int | None]
    actor: Mapped[str] = mapped_column(String(64), default="system")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CallCount(Base):
    """A change in the number of a warning's calls per region and status: +1 for the
    key a call enters, -1 for the one it leaves; summed on read, compacted now and then.

    Written by database triggers on `calls` (migration 0010), never by the application.
    `state` is the call's, except that `calling` counts as `pending` (the figures never
    tell them apart, and a send started must not cost a counter row).
    """

    __tablename__ = "call_counts"
    __table_args__ = (Index("ix_call_counts_warning", "warning_id", "region_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    warning_id: Mapped[int] = mapped_column(Integer)
    region_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    answer_meaning: Mapped[str | None] = mapped_column(String(16))
    calls: Mapped[int] = mapped_column(Integer)
    evacuated: Mapped[int] = mapped_column(Integer)


class FunnelCount(Base):
    """A change in the per-channel funnel of a warning's calls, per region: attempts by
    channel, provider and `stage` (`tried`, `sent` or `delivered`), and first answers
    (`stage` = `answered`) credited to the attempt they answered, else to their channel.

    Written by database triggers on `attempts` and `answers` (migration 0010).
    """

    __tablename__ = "funnel_counts"
    __table_args__ = (Index("ix_funnel_counts_warning", "warning_id", "region_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    warning_id: Mapped[int] = mapped_column(Integer)
    region_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(Integer)


class CurveCount(Base):
    """A change in the number of a warning's calls first answered in one second, per
    region subtree: a call counts at its own region and at every region above it, so a
    reader sums one region's rows, however many calls lie below it.

    Written by database triggers on `calls` (migration 0011).
    """

    __tablename__ = "curve_counts"
    __table_args__ = (Index("ix_curve_counts_warning", "warning_id", "region_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    warning_id: Mapped[int] = mapped_column(Integer)
    region_id: Mapped[int] = mapped_column(Integer)
    at_second: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer)


class User(Base):
    """Someone who logs in to the dashboard; a `region` limits what they see to its subtree."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # admin | supervisor | viewer
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]

    region: Mapped[Region | None] = relationship()
