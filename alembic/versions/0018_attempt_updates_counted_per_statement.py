"""the funnel counts updates of attempts per statement on PostgreSQL

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29 17:25:00.000000

0010 counted an attempt's move between funnel figures with a row trigger: a plpgsql call
and an INSERT for each send recorded, ~12 us of database time a send on top of the
UPDATE (2,000 sends recorded in batches of 100: 65 ms with it per row, 41 ms per
statement). Recording a batch of sends is one UPDATE now, so the statement's transition
tables carry the whole batch: its old and new rows are paired by id, the pairs whose
figure changed give -1 and +1, grouped into one insert. An UPDATE that moves nothing (a
claim) inserts nothing. SQLite keeps its row trigger.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNNEL_COLUMNS = "warning_id, region_id, channel, provider, stage, count"
KEY = ("call_id", "purpose", "channel", "provider")


def _stage(column: str) -> str:
    """An attempt's status as the funnel counts it (as in 0010)."""
    return (
        f"CASE WHEN {column} = 'delivered' THEN 'delivered' "
        f"WHEN {column} IN ('sent', 'no_answer', 'busy') THEN 'sent' ELSE 'tried' END"
    )


def _changed(old: str, new: str) -> str:
    return " OR ".join(
        [f"{old}.{column} IS DISTINCT FROM {new}.{column}" for column in KEY]
        + [f"({_stage(f'{old}.status')}) IS DISTINCT FROM ({_stage(f'{new}.status')})"]
    )


def _row(row: str, count: str) -> str:
    return f"({', '.join(f'{row}.{column}' for column in KEY)}, {_stage(f'{row}.status')}, {count})"


UPGRADE = [
    "DROP TRIGGER attempts_counted_update ON attempts",
    "DROP FUNCTION count_attempt_updated()",
    f"""
    CREATE FUNCTION count_attempts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO funnel_counts ({FUNNEL_COLUMNS})
        SELECT c.warning_id, c.region_id, m.channel, m.provider, m.stage, sum(m.count)
        FROM old_rows o
        JOIN new_rows n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES {_row("o", "-1")}, {_row("n", "1")})
            AS m (call_id, purpose, channel, provider, stage, count)
        JOIN calls c ON c.id = m.call_id
        WHERE m.purpose = 'call' AND ({_changed("o", "n")})
        GROUP BY 1, 2, 3, 4, 5
        HAVING sum(m.count) <> 0;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER attempts_counted_update AFTER UPDATE ON attempts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION count_attempts_updated()""",
]

DOWNGRADE = [
    "DROP TRIGGER attempts_counted_update ON attempts",
    "DROP FUNCTION count_attempts_updated()",
    f"""
    CREATE FUNCTION count_attempt_updated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- one statement for both rows: this runs for every send recorded
        INSERT INTO funnel_counts ({FUNNEL_COLUMNS})
        SELECT c.warning_id, c.region_id, m.channel, m.provider, m.stage, m.count
        FROM (VALUES {_row("OLD", "-1")}, {_row("NEW", "1")})
            AS m (call_id, purpose, channel, provider, stage, count)
        JOIN calls c ON c.id = m.call_id
        WHERE m.purpose = 'call';
        RETURN NULL;
    END $$""",
    f"""CREATE TRIGGER attempts_counted_update AFTER UPDATE ON attempts FOR EACH ROW
    WHEN ({_changed("OLD", "NEW")})
    EXECUTE FUNCTION count_attempt_updated()""",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in DOWNGRADE:
            op.execute(statement)
