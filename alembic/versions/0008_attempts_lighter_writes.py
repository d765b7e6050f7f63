"""attempts: no foreign keys; the provider reference index holds only sent messages

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 14:30:00.000000

A 100,000-person red warning writes 300,000 first attempts in its ingest transaction.
PostgreSQL checks each foreign key of each row with a query of its own, and the check of
`call_id` also locks the call row (FOR KEY SHARE), three times per call: of an ~11 s
INSERT measured at that size, the three keys' checks took 6 s. Attempts are written only
by the dispatcher, beside or after the call they belong to, with the call's own warning
and responder (a notice: whom the dispatcher chose to text), and no warning, call or
responder is ever deleted; tests check that every attempt agrees with its call.

The index by provider reference answers delivery receipts, which name a message a
provider accepted: a queued attempt has no reference yet, so it no longer gets an entry
at insert.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's foreign keys are unnamed: batch mode finds them by a name built from this.
NAMING = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}
SENT = sa.text("provider_message_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("attempts", naming_convention=NAMING) as batch:
        batch.drop_constraint("attempts_warning_id_fkey", type_="foreignkey")
        batch.drop_constraint("attempts_responder_id_fkey", type_="foreignkey")
        batch.drop_constraint("attempts_call_id_fkey", type_="foreignkey")
    op.drop_index("ix_attempts_provider_ref", table_name="attempts")
    op.create_index(
        "ix_attempts_provider_ref",
        "attempts",
        ["provider", "provider_message_id"],
        postgresql_where=SENT,
        sqlite_where=SENT,
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_provider_ref", table_name="attempts")
    op.create_index("ix_attempts_provider_ref", "attempts", ["provider", "provider_message_id"])
    with op.batch_alter_table("attempts", naming_convention=NAMING) as batch:
        batch.create_foreign_key("attempts_warning_id_fkey", "warnings", ["warning_id"], ["id"])
        batch.create_foreign_key(
            "attempts_responder_id_fkey", "responders", ["responder_id"], ["id"]
        )
        batch.create_foreign_key("attempts_call_id_fkey", "calls", ["call_id"], ["id"])
