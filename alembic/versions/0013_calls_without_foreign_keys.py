"""calls: no foreign keys

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 17:30:00.000000

Writing 10,000 calls measured 325 ms on PostgreSQL, 209 ms of it in the per-row checks of
the six foreign keys (even a NULL key's check is a trigger call per row). Calls are
written only by the dispatcher, for warnings, responders and regions it has just read,
and none of those, nor any call, is ever deleted; tests check that every call agrees
with what it names, as they do for attempts (0008).
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic.operations import BatchOperations

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's foreign keys are unnamed: batch mode finds them by a name built from this.
NAMING = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}
KEYS = {
    "calls_warning_id_fkey": ("warnings", "warning_id"),
    "calls_responder_id_fkey": ("responders", "responder_id"),
    "calls_region_id_fkey": ("regions", "region_id"),
    "calls_backup_for_call_id_fkey": ("calls", "backup_for_call_id"),
    "calls_door_knock_task_id_fkey": ("door_knock_tasks", "door_knock_task_id"),
    # named when 0003 added it
    "fk_calls_previous_call_id": ("calls", "previous_call_id"),
}


def _rebuild_calls(change: Callable[[BatchOperations], None]) -> None:
    """Apply `change` to the calls table. SQLite rebuilds the table, which drops its
    triggers and fails on triggers elsewhere naming it (the counters'): they are set
    aside and put back as they were."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    triggers: list[tuple[str, str]] = []
    if sqlite:
        found = op.get_bind().execute(
            sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        )
        triggers = [(name, sql) for name, sql in found]
        for name, _ in triggers:
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("calls", naming_convention=NAMING) as batch:
        change(batch)
    for _, sql in triggers:
        op.execute(sql)


def _drop_keys(batch: BatchOperations) -> None:
    for name in KEYS:
        batch.drop_constraint(name, type_="foreignkey")


def _add_keys(batch: BatchOperations) -> None:
    for name, (table, column) in KEYS.items():
        batch.create_foreign_key(name, table, [column], ["id"])


def upgrade() -> None:
    _rebuild_calls(_drop_keys)


def downgrade() -> None:
    _rebuild_calls(_add_keys)
