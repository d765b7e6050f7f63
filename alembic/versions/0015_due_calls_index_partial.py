"""calls: the due index holds only calls whose ladder has started

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 17:45:00.000000

Calls are written with no `next_step_at` (the ladder starts when a provider accepts a
send), and the sweep looks only for `next_step_at <= now`: an entry per new call, 100,000
for a big warning, written at the webhook and never read.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STARTED = sa.text("next_step_at IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_calls_due", table_name="calls")
    op.create_index(
        "ix_calls_due", "calls", ["next_step_at"], postgresql_where=STARTED, sqlite_where=STARTED
    )


def downgrade() -> None:
    op.drop_index("ix_calls_due", table_name="calls")
    op.create_index("ix_calls_due", "calls", ["next_step_at"])
