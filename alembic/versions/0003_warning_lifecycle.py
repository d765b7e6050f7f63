"""warning lifecycle: raw body, drills, supersession, carried-over calls

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 09:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("warnings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw_body", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("content_type", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("is_drill", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("signal", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("supersedes_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_warnings_supersedes_id", "warnings", ["supersedes_id"], ["id"]
        )
        batch_op.create_index("ix_warnings_supersedes_id", ["supersedes_id"])
        batch_op.create_index("ix_warnings_state_expires", ["state", "expires"])
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previous_call_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_calls_previous_call_id", "calls", ["previous_call_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_constraint("fk_calls_previous_call_id", type_="foreignkey")
        batch_op.drop_column("previous_call_id")
    with op.batch_alter_table("warnings", schema=None) as batch_op:
        batch_op.drop_index("ix_warnings_state_expires")
        batch_op.drop_index("ix_warnings_supersedes_id")
        batch_op.drop_constraint("fk_warnings_supersedes_id", type_="foreignkey")
        for column in ("supersedes_id", "signal", "is_drill", "content_type", "raw_body"):
            batch_op.drop_column(column)
