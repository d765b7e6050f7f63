"""counters of a warning's figures, kept by triggers as calls, attempts and answers change

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 14:30:00.000000

The warning page counted every call and every attempt on each view (~1.6 s at 100,000
calls). `call_counts` and `funnel_counts` hold delta rows instead: every insert or update
that moves a call (or a call's attempt, or a call's first answer) from one figure to
another adds -1 to the figure it leaves and +1 to the one it enters, in the same
transaction. Readers sum them (`dispatcher.counters`); a worker compacts them now and
then. Rows are only ever added, so concurrent writers never wait on a shared counter row.

Triggers rather than application code: the rows change in a dozen places (fan-out,
sends, receipts, answers, the sweep, cancellations), and a trigger misses none of them.
On PostgreSQL the inserts and the updates of calls are counted per statement, from the
statement's transition tables (a fan-out of 300,000 attempts is one grouped insert, a
sweep's update of thousands of calls another); updates of attempts per row, and only
those that move one between figures (most do not: a claim, a cancellation of queued
sends). SQLite has row triggers only. Calls and attempts are never deleted.

The existing rows are counted once, as the starting figures.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _state(column: str) -> str:
    """A call's state as counted: `calling` is still `pending` to every figure."""
    return f"CASE WHEN {column} = 'calling' THEN 'pending' ELSE {column} END"


def _stage(column: str) -> str:
    """An attempt's status as the funnel counts it (`dispatcher.figures`)."""
    return (
        f"CASE WHEN {column} = 'delivered' THEN 'delivered' "
        f"WHEN {column} IN ('sent', 'no_answer', 'busy') THEN 'sent' ELSE 'tried' END"
    )


def _funnel_key_changed(old: str, new: str) -> str:
    return " OR ".join(
        [
            f"{old}.{column} IS DISTINCT FROM {new}.{column}"
            for column in ("call_id", "purpose", "channel", "provider")
        ]
        + [f"({_stage(f'{old}.status')}) IS DISTINCT FROM ({_stage(f'{new}.status')})"]
    )


def _call_key_changed(old: str, new: str, distinct: str) -> str:
    return " OR ".join(
        [
            f"{old}.{column} {distinct} {new}.{column}"
            for column in ("warning_id", "region_id", "answer_meaning", "evacuated")
        ]
        + [f"({_state(f'{old}.state')}) {distinct} ({_state(f'{new}.state')})"]
    )


CALL_COLUMNS = "warning_id, region_id, state, answer_meaning, calls, evacuated"
FUNNEL_COLUMNS = "warning_id, region_id, channel, provider, stage, count"


def _first_answers(answers: str) -> str:
    """The first answer of each call among `answers`, credited to the attempt it
    answered when known (its channel and provider), else to its own channel."""
    return f"""
        SELECT c.warning_id, c.region_id,
               CASE WHEN t.id IS NULL THEN n.channel ELSE t.channel END,
               CASE WHEN t.id IS NULL THEN n.provider ELSE t.provider END,
               'answered', count(*)
        FROM {answers} n
        JOIN calls c ON c.id = n.call_id
        LEFT JOIN attempts t ON t.id = n.attempt_id
        WHERE NOT EXISTS (SELECT 1 FROM answers e WHERE e.call_id = n.call_id AND e.id < n.id)
        GROUP BY 1, 2, 3, 4"""


def _call_attempts(attempts: str, sign: str = "") -> str:
    """A call's attempts among `attempts`, counted per call region, channel and stage."""
    return f"""
        SELECT c.warning_id, c.region_id, a.channel, a.provider, {_stage("a.status")},
               {sign}count(*)
        FROM {attempts} a JOIN calls c ON c.id = a.call_id
        WHERE a.purpose = 'call'
        GROUP BY 1, 2, 3, 4, 5"""


def _calls(calls: str, sign: str = "") -> str:
    return f"""
        SELECT warning_id, region_id, {_state("state")} AS state, answer_meaning,
               {sign}count(*) AS calls, {sign}coalesce(sum(evacuated), 0) AS evacuated
        FROM {calls}
        GROUP BY 1, 2, 3, 4"""


POSTGRESQL_UP = [
    f"""
    CREATE FUNCTION count_calls_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO call_counts ({CALL_COLUMNS}) {_calls("new_rows")};
        RETURN NULL;
    END $$""",
    f"""
    CREATE FUNCTION count_calls_updated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO call_counts ({CALL_COLUMNS})
        SELECT warning_id, region_id, state, answer_meaning, sum(calls), sum(evacuated)
        FROM ({_calls("old_rows", "-")} UNION ALL {_calls("new_rows")}) AS moved
        GROUP BY 1, 2, 3, 4
        HAVING sum(calls) <> 0 OR sum(evacuated) <> 0;
        RETURN NULL;
    END $$""",
    f"""
    CREATE FUNCTION count_attempts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO funnel_counts ({FUNNEL_COLUMNS}) {_call_attempts("new_rows")};
        RETURN NULL;
    END $$""",
    f"""
    CREATE FUNCTION count_attempt_updated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- one statement for both rows: this runs for every send recorded
        INSERT INTO funnel_counts ({FUNNEL_COLUMNS})
        SELECT c.warning_id, c.region_id, m.channel, m.provider, m.stage, m.count
        FROM (VALUES
            (OLD.call_id, OLD.purpose, OLD.channel, OLD.provider, {_stage("OLD.status")}, -1),
            (NEW.call_id, NEW.purpose, NEW.channel, NEW.provider, {_stage("NEW.status")}, 1)
        ) AS m (call_id, purpose, channel, provider, stage, count)
        JOIN calls c ON c.id = m.call_id
        WHERE m.purpose = 'call';
        RETURN NULL;
    END $$""",
    f"""
    CREATE FUNCTION count_answers_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO funnel_counts ({FUNNEL_COLUMNS}) {_first_answers("new_rows")};
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER calls_counted_insert AFTER INSERT ON calls
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION count_calls_inserted()""",
    """CREATE TRIGGER calls_counted_update AFTER UPDATE ON calls
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION count_calls_updated()""",
    """CREATE TRIGGER attempts_counted_insert AFTER INSERT ON attempts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION count_attempts_inserted()""",
    f"""CREATE TRIGGER attempts_counted_update AFTER UPDATE ON attempts FOR EACH ROW
    WHEN ({_funnel_key_changed("OLD", "NEW")})
    EXECUTE FUNCTION count_attempt_updated()""",
    """CREATE TRIGGER answers_counted_insert AFTER INSERT ON answers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION count_answers_inserted()""",
]

POSTGRESQL_DOWN = [
    "DROP TRIGGER answers_counted_insert ON answers",
    "DROP TRIGGER attempts_counted_update ON attempts",
    "DROP TRIGGER attempts_counted_insert ON attempts",
    "DROP TRIGGER calls_counted_update ON calls",
    "DROP TRIGGER calls_counted_insert ON calls",
    "DROP FUNCTION count_answers_inserted()",
    "DROP FUNCTION count_attempt_updated()",
    "DROP FUNCTION count_attempts_inserted()",
    "DROP FUNCTION count_calls_updated()",
    "DROP FUNCTION count_calls_inserted()",
]


def _sqlite_call_row(row: str, sign: str) -> str:
    return (
        f"INSERT INTO call_counts ({CALL_COLUMNS}) VALUES ({row}.warning_id, {row}.region_id, "
        f"{_state(f'{row}.state')}, {row}.answer_meaning, {sign}1, "
        f"{sign}coalesce({row}.evacuated, 0));"
    )


def _sqlite_attempt_row(row: str, sign: str) -> str:
    return (
        f"INSERT INTO funnel_counts ({FUNNEL_COLUMNS}) SELECT c.warning_id, c.region_id, "
        f"{row}.channel, {row}.provider, {_stage(f'{row}.status')}, {sign}1 "
        f"FROM calls c WHERE c.id = {row}.call_id AND {row}.purpose = 'call';"
    )


SQLITE_UP = [
    f"""CREATE TRIGGER calls_counted_insert AFTER INSERT ON calls
    BEGIN {_sqlite_call_row("NEW", "")} END""",
    f"""CREATE TRIGGER calls_counted_update AFTER UPDATE ON calls
    WHEN {_call_key_changed("OLD", "NEW", "IS NOT")}
    BEGIN {_sqlite_call_row("OLD", "-")} {_sqlite_call_row("NEW", "")} END""",
    f"""CREATE TRIGGER attempts_counted_insert AFTER INSERT ON attempts
    BEGIN {_sqlite_attempt_row("NEW", "")} END""",
    f"""CREATE TRIGGER attempts_counted_update AFTER UPDATE ON attempts
    WHEN {_funnel_key_changed("OLD", "NEW").replace("IS DISTINCT FROM", "IS NOT")}
    BEGIN {_sqlite_attempt_row("OLD", "-")} {_sqlite_attempt_row("NEW", "")} END""",
    f"""CREATE TRIGGER answers_counted_insert AFTER INSERT ON answers
    BEGIN INSERT INTO funnel_counts ({FUNNEL_COLUMNS})
    {_first_answers("(SELECT NEW.id AS id, NEW.call_id AS call_id, NEW.attempt_id AS attempt_id, NEW.channel AS channel, NEW.provider AS provider) AS")}; END""",  # noqa: E501
]

SQLITE_DOWN = [
    f"DROP TRIGGER {name}"
    for name in (
        "answers_counted_insert",
        "attempts_counted_update",
        "attempts_counted_insert",
        "calls_counted_update",
        "calls_counted_insert",
    )
]


def upgrade() -> None:
    op.create_table(
        "call_counts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("warning_id", sa.Integer(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("answer_meaning", sa.String(length=16), nullable=True),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("evacuated", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_call_counts_warning", "call_counts", ["warning_id", "region_id"])
    op.create_table(
        "funnel_counts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("warning_id", sa.Integer(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_funnel_counts_warning", "funnel_counts", ["warning_id", "region_id"])
    # the figures so far, then the triggers that keep them
    op.execute(f"INSERT INTO call_counts ({CALL_COLUMNS}) {_calls('calls')}")
    op.execute(f"INSERT INTO funnel_counts ({FUNNEL_COLUMNS}) {_call_attempts('attempts')}")
    op.execute(f"INSERT INTO funnel_counts ({FUNNEL_COLUMNS}) {_first_answers('answers')}")
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_UP if postgresql else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_DOWN if postgresql else SQLITE_DOWN:
        op.execute(statement)
    op.drop_index("ix_funnel_counts_warning", table_name="funnel_counts")
    op.drop_table("funnel_counts")
    op.drop_index("ix_call_counts_warning", table_name="call_counts")
    op.drop_table("call_counts")
