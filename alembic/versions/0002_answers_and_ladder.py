"""answers as status history, the full ladder, households and the inbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("evacuated", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("status_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("code", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("delivered_at", sa.DateTime(), nullable=True))

    with op.batch_alter_table("answers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("people", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("recorded_by", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("method", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))

    with op.batch_alter_table("door_knock_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("accepted_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("escalate_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("escalated_at", sa.DateTime(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_door_knock_tasks_escalate_at"), ["escalate_at"], unique=False
        )

    op.create_table(
        "households",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=200), nullable=False),
        sa.Column("people", sa.Integer(), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["region_id"], ["regions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id"),
    )
    with op.batch_alter_table("households", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_households_region_id"), ["region_id"], unique=False)

    op.create_table(
        "task_households",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("mark", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["household_id"], ["households.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["door_knock_tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "household_id"),
    )
    with op.batch_alter_table("task_households", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_households_task_id"), ["task_id"], unique=False)

    op.create_table(
        "ladder_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["attempt_id"], ["attempts.id"]),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"]),
        sa.ForeignKeyConstraint(["recipient_id"], ["responders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("call_id", "kind", "recipient_id"),
    )
    with op.batch_alter_table("ladder_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ladder_notices_call_id"), ["call_id"], unique=False)
        batch_op.create_index("ix_ladder_notices_pending", ["sent_at"], unique=False)

    op.create_table(
        "inbox_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("responder_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["responder_id"], ["responders.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("inbox_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbox_messages_at"), ["at"], unique=False)


def downgrade() -> None:
    op.drop_table("inbox_messages")
    op.drop_table("ladder_notices")
    op.drop_table("task_households")
    op.drop_table("households")
    with op.batch_alter_table("door_knock_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_door_knock_tasks_escalate_at"))
        for column in ("escalated_at", "escalate_at", "finished_at", "accepted_at", "code"):
            batch_op.drop_column(column)
    with op.batch_alter_table("answers", schema=None) as batch_op:
        for column in ("note", "method", "recorded_by", "people"):
            batch_op.drop_column(column)
    with op.batch_alter_table("calls", schema=None) as batch_op:
        for column in ("delivered_at", "code", "status_at", "evacuated"):
            batch_op.drop_column(column)
