"""call_again_batches: due calls whose "call again" sends a worker has still to write

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-29 21:00:00.000000

A sweep over a big warning's silent calls wrote each one's call-again sends itself: at
100,000 calls, 200,000 attempts, half the sweep's time. A big chunk's sends are now
recorded here, one row per warning and step, and written by a worker
(`dispatcher.call_again`), as a big fan-out's first sends are (0014).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_again_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("warning_id", sa.Integer(), nullable=False),
        sa.Column("call_ids", sa.Text(), nullable=False),
        sa.Column("channels", sa.String(length=200), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(), nullable=False),
        sa.Column("written_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["warning_id"], ["warnings.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_call_again_batches_warning_id", "call_again_batches", ["warning_id"])
    op.create_index(
        "ix_call_again_batches_unwritten",
        "call_again_batches",
        ["enqueued_at"],
        postgresql_where=sa.text("written_at IS NULL"),
        sqlite_where=sa.text("written_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_call_again_batches_unwritten", table_name="call_again_batches")
    op.drop_index("ix_call_again_batches_warning_id", table_name="call_again_batches")
    op.drop_table("call_again_batches")
