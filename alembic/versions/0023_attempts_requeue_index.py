"""queued sends indexed by when they were enqueued, sending ones by when they started

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-30 05:20:00.000000

Every sweep (each 10 s) asks for queued sends that are due and were not handed to the
queue in the last `requeue_after_s`, and for sends held past their lease. Both were
answered by `ix_attempts_due` on (status, due_at): every queued send that is due matched
its range, and each was read to find it enqueued moments ago. While a big warning's
200,000 call-again sends wait in the queue, one sweep read them all to requeue none
(0.6-0.7 s of a 3-5 s sweep at N = 100,000). `ix_attempts_requeue` holds queued sends
only, by `enqueued_at` first, so the sweep reads just those never enqueued or enqueued
long ago; `ix_attempts_sending` holds the sends in a worker's hands, by when they were
taken. A send's later versions (sent, delivered, failed) enter neither, so recording a
send maintains one index fewer than before.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _where(condition: str) -> dict[str, sa.TextClause]:
    return {"postgresql_where": sa.text(condition), "sqlite_where": sa.text(condition)}


def upgrade() -> None:
    op.create_index(
        "ix_attempts_requeue", "attempts", ["enqueued_at", "due_at"], **_where("status = 'queued'")
    )
    op.create_index(
        "ix_attempts_sending", "attempts", ["updated_at"], **_where("status = 'sending'")
    )
    op.drop_index("ix_attempts_due", table_name="attempts")


def downgrade() -> None:
    op.create_index("ix_attempts_due", "attempts", ["status", "due_at"])
    op.drop_index("ix_attempts_sending", table_name="attempts")
    op.drop_index("ix_attempts_requeue", table_name="attempts")
