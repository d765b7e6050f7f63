"""counters of first answers per second for the time-to-answer curve, per region subtree

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 14:40:00.000000

The curve read every answered call's time (100,000 at N = 100,000; grouped per second in
SQL it still scanned them all, ~120 ms). `curve_counts` holds delta rows like the other
counters (0010): when a call's `answered_at` is set or moves, -1 at the second it left
and +1 at the second it entered, once for its own region and once for each region above
it. A reader in any scope then sums the rows of one region, its scope's root: as many as
the seconds in which calls were answered, however many calls there are.

Triggers on `calls` as in 0010: per statement on PostgreSQL (a sweep's update of
thousands of calls, none answered, adds nothing), per row on SQLite.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = "warning_id, region_id, at_second, count"


def _seconds(rows: str, sign: str, second: str) -> str:
    """`rows`' answered calls as (warning, region, second, ±1) per region they lie in."""
    return f"""
        SELECT d.warning_id, up.id AS region_id, {second} AS at_second, {sign}1 AS count
        FROM {rows} d
        JOIN regions own ON own.id = d.region_id
        CROSS JOIN LATERAL unnest(string_to_array(trim(BOTH '/' FROM own.path), '/')) AS above(code)
        JOIN regions up ON up.code = above.code
        WHERE d.answered_at IS NOT NULL"""


def _postgresql_moves(*parts: tuple[str, str]) -> str:
    moved = " UNION ALL ".join(
        _seconds(rows, sign, "date_trunc('second', d.answered_at)") for rows, sign in parts
    )
    return f"""
        INSERT INTO curve_counts ({COLUMNS})
        SELECT warning_id, region_id, at_second, sum(count) FROM ({moved}) AS moved
        GROUP BY 1, 2, 3 HAVING sum(count) <> 0"""


_INSERTED = _postgresql_moves(("new_rows", ""))
# Unanswered calls (a sweep's, a claim's) drop out before the regions are looked up.
_UPDATED = _postgresql_moves(
    ("(SELECT * FROM old_rows WHERE answered_at IS NOT NULL)", "-"),
    ("(SELECT * FROM new_rows WHERE answered_at IS NOT NULL)", ""),
)
POSTGRESQL_UP = [
    f"""
    CREATE FUNCTION count_answer_times_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_INSERTED};
        RETURN NULL;
    END $$""",
    f"""
    CREATE FUNCTION count_answer_times_updated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_UPDATED};
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER calls_answer_times_insert AFTER INSERT ON calls
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION count_answer_times_inserted()""",
    """CREATE TRIGGER calls_answer_times_update AFTER UPDATE ON calls
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION count_answer_times_updated()""",
]

POSTGRESQL_DOWN = [
    "DROP TRIGGER calls_answer_times_update ON calls",
    "DROP TRIGGER calls_answer_times_insert ON calls",
    "DROP FUNCTION count_answer_times_updated()",
    "DROP FUNCTION count_answer_times_inserted()",
]


def _sqlite_row(row: str, sign: str) -> str:
    # no CTEs or table functions in SQLite triggers: the regions above are path prefixes
    return f"""
        INSERT INTO curve_counts ({COLUMNS})
        SELECT {row}.warning_id, up.id, strftime('%Y-%m-%d %H:%M:%S', {row}.answered_at),
               {sign}1
        FROM regions own JOIN regions up ON substr(own.path, 1, length(up.path)) = up.path
        WHERE own.id = {row}.region_id AND {row}.answered_at IS NOT NULL;"""


SQLITE_UP = [
    f"""CREATE TRIGGER calls_answer_times_insert AFTER INSERT ON calls
    WHEN NEW.answered_at IS NOT NULL
    BEGIN {_sqlite_row("NEW", "")} END""",
    f"""CREATE TRIGGER calls_answer_times_update AFTER UPDATE ON calls
    WHEN OLD.answered_at IS NOT NEW.answered_at OR OLD.region_id IS NOT NEW.region_id
        OR OLD.warning_id IS NOT NEW.warning_id
    BEGIN {_sqlite_row("OLD", "-")} {_sqlite_row("NEW", "")} END""",
]

SQLITE_DOWN = ["DROP TRIGGER calls_answer_times_update", "DROP TRIGGER calls_answer_times_insert"]


def upgrade() -> None:
    op.create_table(
        "curve_counts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("warning_id", sa.Integer(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column("at_second", sa.DateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_curve_counts_warning", "curve_counts", ["warning_id", "region_id"])
    postgresql = op.get_bind().dialect.name == "postgresql"
    # the answers so far, then the triggers that keep them
    if postgresql:
        op.execute(_postgresql_moves(("calls", "")))
    else:
        op.execute(
            f"""INSERT INTO curve_counts ({COLUMNS})
            SELECT c.warning_id, up.id, strftime('%Y-%m-%d %H:%M:%S', c.answered_at), count(*)
            FROM calls c JOIN regions own ON own.id = c.region_id
            JOIN regions up ON substr(own.path, 1, length(up.path)) = up.path
            WHERE c.answered_at IS NOT NULL GROUP BY 1, 2, 3"""
        )
    for statement in POSTGRESQL_UP if postgresql else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_DOWN if postgresql else SQLITE_DOWN:
        op.execute(statement)
    op.drop_index("ix_curve_counts_warning", table_name="curve_counts")
    op.drop_table("curve_counts")
