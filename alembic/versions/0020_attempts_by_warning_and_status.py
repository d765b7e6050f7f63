"""attempts indexed by (warning_id, status) instead of warning_id alone

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-29 23:40:00.000000

The sweep's undeliverable check asked for every call with a send that did not get
through as `calls.id IN (SELECT call_id FROM attempts WHERE status IN (...dead...))`,
over the whole history: every cancelled, failed or unanswered send of every warning ever
sent. Inside an `OR`, PostgreSQL cannot join that subquery; once it outgrows `work_mem`
it is rescanned for each open call, and a sweep with 2,000,000 such sends on record and
30,000 open calls had not finished after ten minutes: escalation stood still. The check
now reads only the failed sends of active warnings, which this index finds without
touching the rest (`dispatcher.escalation`). It replaces `ix_attempts_warning_id`,
whose lookups by warning it serves as well, so writing a send maintains no more
indexes than before.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_attempts_warning_status", "attempts", ["warning_id", "status"])
    op.drop_index("ix_attempts_warning_id", table_name="attempts")


def downgrade() -> None:
    op.create_index("ix_attempts_warning_id", "attempts", ["warning_id"])
    op.drop_index("ix_attempts_warning_status", table_name="attempts")
