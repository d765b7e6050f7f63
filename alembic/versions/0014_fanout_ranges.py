"""fanout_ranges: a big warning's calls whose first sends a worker has still to write

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 17:40:00.000000

A big warning's calls after its first stage are written by the webhook without their
sends: each stage records its range of call ids here, and a worker writes the range's
first sends (`dispatcher.fanout_stages`).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fanout_ranges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("warning_id", sa.Integer(), nullable=False),
        sa.Column("first_call_id", sa.Integer(), nullable=False),
        sa.Column("last_call_id", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(), nullable=False),
        sa.Column("written_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["warning_id"], ["warnings.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_fanout_ranges_warning_id", "fanout_ranges", ["warning_id"])


def downgrade() -> None:
    op.drop_index("ix_fanout_ranges_warning_id", table_name="fanout_ranges")
    op.drop_table("fanout_ranges")
