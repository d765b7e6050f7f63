"""seen_texts: the provider ids of inbound texts already taken

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 00:10:00.000000

A provider posting the same SMS reply twice (a retried callback) made a second answer
and a second thank-you text. Each text a provider names by an id is now recorded here
as it is taken, and a text already here is left out (`dispatcher.seen_texts`).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seen_texts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_message_id", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "provider_message_id"),
    )


def downgrade() -> None:
    op.drop_table("seen_texts")
