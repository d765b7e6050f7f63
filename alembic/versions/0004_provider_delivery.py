"""provider delivery: rate-limit slots, failover hints, receipts, broadcast retries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 08:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider_status", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("skip_providers", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("slot_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("reported_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_code", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("try_number", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.add_column(sa.Column("slot_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.drop_column("slot_at")
        batch_op.drop_column("try_number")
        batch_op.drop_column("error_code")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("reported_at")
        batch_op.drop_column("slot_at")
        batch_op.drop_column("skip_providers")
        batch_op.drop_column("provider_status")
