"""the answers trigger finds each call's first answer through the call's own answers

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29 17:30:00.000000

`count_answers_inserted` credits a call's first answer to the funnel. It asked whether an
earlier answer of the same call exists (`NOT EXISTS`), which PostgreSQL planned as a hash
anti join over every answer on record whenever the statistics of `answers` were stale (a
table that grows from nothing during a burst of replies): each batch of replies read the
whole table (~4 ms at 20,000 answers, growing with every answer). Asking instead whether
the new row is the call's lowest answer id (`= (SELECT min(id) ...)`) is a correlated
subquery PostgreSQL runs per new row through `ix_answers_call_id` (~0.1 ms for a batch),
whatever the statistics say. Same rows counted: a row is a call's first answer exactly
when no answer of that call has a lower id. SQLite's row trigger looks up one call per
row already and stays as it is.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _function(first_answer: str) -> str:
    return f"""
    CREATE OR REPLACE FUNCTION count_answers_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO funnel_counts (warning_id, region_id, channel, provider, stage, count)
        SELECT c.warning_id, c.region_id,
               CASE WHEN t.id IS NULL THEN n.channel ELSE t.channel END,
               CASE WHEN t.id IS NULL THEN n.provider ELSE t.provider END,
               'answered', count(*)
        FROM new_rows n
        JOIN calls c ON c.id = n.call_id
        LEFT JOIN attempts t ON t.id = n.attempt_id
        WHERE {first_answer}
        GROUP BY 1, 2, 3, 4;
        RETURN NULL;
    END $$"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            _function("n.id = (SELECT min(e.id) FROM answers e WHERE e.call_id = n.call_id)")
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            _function(
                "NOT EXISTS (SELECT 1 FROM answers e WHERE e.call_id = n.call_id AND e.id < n.id)"
            )
        )
