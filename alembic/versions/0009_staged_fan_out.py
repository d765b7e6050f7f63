"""warnings record when their fan-out finished, and who may still be writing it

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 14:45:00.000000

A big warning's calls are written in stages (`dispatcher.fanout_stages`):
`fanned_out_at` is empty until the last is written, and `fanout_lease_until` is how long
the writer is trusted before the sweep finishes the job. Warnings already stored were
fanned out in one transaction, when they were received.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("warnings") as batch:
        batch.add_column(sa.Column("fanned_out_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("fanout_lease_until", sa.DateTime(), nullable=True))
    op.execute("UPDATE warnings SET fanned_out_at = received_at")


def downgrade() -> None:
    with op.batch_alter_table("warnings") as batch:
        batch.drop_column("fanout_lease_until")
        batch.drop_column("fanned_out_at")
