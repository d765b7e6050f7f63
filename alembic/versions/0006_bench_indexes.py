"""indexes for a warning of 100,000 calls: region subtree prefix match on PostgreSQL

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 10:00:00.000000

`regions.path LIKE '/a/b/%'` (a subtree) can use a plain b-tree index on SQLite and under
the C collation only; PostgreSQL in any other collation needs `text_pattern_ops`.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_regions_path_pattern ON regions (path text_pattern_ops)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_regions_path_pattern")
