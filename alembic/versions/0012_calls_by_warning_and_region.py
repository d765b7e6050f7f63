"""calls indexed by (warning_id, region_id)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 14:55:00.000000

The warning page lists up to 500 silent, answered or help-seeking people, grouped by
place (region path order). With 100,000 answered calls, sorting them all to keep 500
took ~150 ms; walking the regions in path order and each region's calls by this index
stops after the first 500 (~2 ms).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_calls_warning_region", "calls", ["warning_id", "region_id"])


def downgrade() -> None:
    op.drop_index("ix_calls_warning_region", table_name="calls")
