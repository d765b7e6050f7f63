"""audit_events: no foreign keys

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29 17:10:00.000000

A sweep over 100,000 due calls writes an audit row for each step. PostgreSQL checks each
foreign key of each row with a query of its own (and the check of `call_id` locks the
call, which the sweep already holds): measured on a 2,000-call chunk, the two keys' checks
made the audit INSERT ~3 times as slow (22 ms instead of 7). Audit rows are written only by
the dispatcher, beside the call or warning they record, and no warning or call is ever
deleted; tests check that every audit row names an existing call and warning.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's foreign keys are unnamed: batch mode finds them by a name built from this.
NAMING = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}


def upgrade() -> None:
    with op.batch_alter_table("audit_events", naming_convention=NAMING) as batch:
        batch.drop_constraint("audit_events_warning_id_fkey", type_="foreignkey")
        batch.drop_constraint("audit_events_call_id_fkey", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("audit_events", naming_convention=NAMING) as batch:
        batch.create_foreign_key("audit_events_warning_id_fkey", "warnings", ["warning_id"], ["id"])
        batch.create_foreign_key("audit_events_call_id_fkey", "calls", ["call_id"], ["id"])
