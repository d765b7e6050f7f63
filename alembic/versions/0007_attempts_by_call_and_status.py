"""attempts indexed by (call_id, status) instead of call_id alone

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 13:25:00.000000

An answer cancels its call's queued sends (`call_id IN (...) AND status = 'queued'`).
With `call_id` alone indexed, PostgreSQL combined it with `ix_attempts_due`, whose
`queued` entries cover every send of a 100,000-person warning until vacuum: ~10 ms an
answer. The pair answers it from one index and still serves lookups by call alone.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_attempts_call_status", "attempts", ["call_id", "status"])
    op.drop_index("ix_attempts_call_id", table_name="attempts")


def downgrade() -> None:
    op.create_index("ix_attempts_call_id", "attempts", ["call_id"])
    op.drop_index("ix_attempts_call_status", table_name="attempts")
