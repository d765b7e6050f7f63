"""Many rows at once: a condition on a large set of ids, ids known before the insert, and
the insert itself, each done the fast way on each back end.

* `id_in`: `column` is one of these ids, as a single parameter whatever their number
  (`IN (SELECT unnest(array))` on PostgreSQL, `IN (SELECT value FROM json_each(...))` on
  SQLite), so 100,000 ids are neither 100,000 bind parameters nor 200 round trips.
* `in_ids_param` / `ids_value`: the same condition in a statement built once, the ids
  given at execution as a named parameter: a statement a hot path runs for every batch
  costs SQLAlchemy no construction and no cache key of its own each time.
* `reserve_ids`: ids for rows not yet written, so whatever derives from an id (a call's
  answer code) is computed before the insert instead of by an UPDATE after it. PostgreSQL
  draws them from the table's sequence; SQLite continues after the largest id, which is
  safe because every SQLite write transaction holds the write lock from its BEGIN
  IMMEDIATE (`dispatcher.db`) until it commits.
* `insert_rows`: PostgreSQL COPY through the session's own asyncpg connection (so in the
  same transaction), Core executemany on SQLite; a broken constraint is an
  `IntegrityError` on both.
* `insert_columns`: rows given as columns (a list of values per column) and constants:
  on PostgreSQL one `INSERT ... SELECT` from the columns sent as arrays (`unnest`), so a
  row costs no Python work of its own; Core executemany on SQLite.
* `update_rows`: many rows each set to its own values, by id: on PostgreSQL one UPDATE
  joined to the columns sent as arrays (`unnest`), Core executemany on SQLite.
* `insert_skipping_existing`: an INSERT that leaves out rows whose `unique` columns are
  already taken (`ON CONFLICT DO NOTHING`), in each back end's dialect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Integer,
    String,
    Table,
    TextClause,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.db import UTCDateTime

# What the PostgreSQL statements built here are spelled for (types, quoting).
_POSTGRESQL = postgresql.dialect()


def _is_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def id_in(session: AsyncSession, column: Any, ids: Sequence[int | str]) -> ColumnElement[bool]:
    """`column` is one of `ids` (integers, or strings such as region codes), passed as one
    parameter."""
    return _in_ids(column, _is_postgresql(session), None, ids_value(session, ids))


def in_ids_param(column: Any, name: str, postgresql: bool) -> ColumnElement[bool]:
    """`column` is one of the ids passed at execution as parameter `name`, its value
    made by `ids_value`; for a statement built once per back end (`postgresql` or not)."""
    return _in_ids(column, postgresql, name)


def _in_ids(column: Any, postgresql: bool, name: str | None, *value: Any) -> ColumnElement[bool]:
    """`column IN` the ids of one parameter: bound now (`value`), or named for later."""
    bound: dict[str, Any] = {"value": value[0]} if value else {}
    if postgresql:
        kind = String if isinstance(column.type, String) else Integer
        # a subquery, not `= ANY(array)`: a generic plan would scan the array per row
        values = select(func.unnest(bindparam(name, type_=ARRAY(kind), **bound)))
    else:
        ids = bindparam(name, type_=String, **bound)
        values = select(text("value")).select_from(func.json_each(ids))
    return column.in_(values)  # type: ignore[no-any-return]


def ids_value(session: AsyncSession, ids: Sequence[int | str]) -> Any:
    """The value of an `in_ids_param` parameter on the session's back end."""
    return list(ids) if _is_postgresql(session) else json.dumps(list(ids))


async def reserve_ids(session: AsyncSession, table: Table, count: int) -> list[int]:
    """`count` unused ids of `table`, ascending, for rows this transaction will insert."""
    if count <= 0:
        return []
    if _is_postgresql(session):
        sequence = await session.scalar(select(func.pg_get_serial_sequence(table.name, "id")))
        # one row holding an array: 300,000 ids are one value to decode, not 300,000 rows
        ids = await session.scalar(
            select(func.array_agg(func.nextval(sequence))).select_from(
                func.generate_series(1, count)
            )
        )
        return sorted(ids or [])
    last = await session.scalar(select(func.coalesce(func.max(table.c.id), 0)))
    return list(range(int(last or 0) + 1, int(last or 0) + 1 + count))


def _copy_records(
    table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    """The rows as COPY takes them: COPY bypasses UTCDateTime's bind processing, so its
    columns get naive UTC here, as that type would store them (and JSON its text)."""
    utc_columns = [
        index for index, name in enumerate(columns) if isinstance(table.c[name].type, UTCDateTime)
    ]
    json_columns = [
        index for index, name in enumerate(columns) if isinstance(table.c[name].type, JSON)
    ]
    if not utc_columns and not json_columns:
        return [tuple(row) for row in rows]
    converted: dict[datetime, datetime] = {}

    def naive(value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value not in converted:
            converted[value] = UTCDateTime().process_bind_param(value, None)  # type: ignore[arg-type,assignment]
        return converted[value]

    records = []
    for row in rows:
        record = list(row)
        for index in utc_columns:
            record[index] = naive(record[index])
        for index in json_columns:
            record[index] = json.dumps(record[index])
        records.append(tuple(record))
    return records


async def insert_rows(
    session: AsyncSession, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert `rows` (tuples in the order of `columns`) in the session's transaction."""
    if not rows:
        return
    if not _is_postgresql(session):
        await session.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    from asyncpg.exceptions import IntegrityConstraintViolationError

    try:
        await driver.copy_records_to_table(
            table.name, records=_copy_records(table, columns, rows), columns=list(columns)
        )
    except IntegrityConstraintViolationError as error:
        # as SQLAlchemy reports it for its own statements, so callers catch one kind
        raise IntegrityError(f"COPY {table.name}", None, error) from error


async def insert_columns(
    session: AsyncSession,
    table: Table,
    columns: Mapping[str, Sequence[Any]],
    constants: Mapping[str, Any] | None = None,
    returning: str | None = None,
) -> list[Any]:
    """Insert one row per position of `columns` (lists of equal length), each row also
    taking the `constants`; returns the inserted rows' `returning` column, if one is
    named (in no particular order). A JSON value repeated as the same object is encoded
    once."""
    constants = dict(constants or {})
    count = len(next(iter(columns.values()), ()))
    if not count:
        return []
    if not _is_postgresql(session):
        keys = list(columns)
        statement = insert(table)
        rows = [
            {**constants, **dict(zip(keys, row, strict=True))}
            for row in zip(*columns.values(), strict=True)
        ]
        if returning is None:
            await session.execute(statement, rows)
            return []
        return list(await session.scalars(statement.returning(table.c[returning]), rows))
    dialect = session.get_bind().dialect
    values: dict[str, Any] = {}
    for number, (name, value) in enumerate(constants.items()):
        [values[f"c{number}"]] = _column_values(table, name, [value], dialect)
    for number, (name, column) in enumerate(columns.items()):
        values[f"p{number}"] = _column_values(table, name, column, dialect)
    unnest = _unnest_insert(table, tuple(constants), tuple(columns), returning)
    result = await session.execute(unnest, values)
    return list(result.scalars()) if returning else []


@lru_cache(maxsize=256)
def _unnest_insert(
    table: Table, constants: tuple[str, ...], columns: tuple[str, ...], returning: str | None
) -> TextClause:
    """`insert_columns`' statement on PostgreSQL, built once per shape: the hot paths
    insert the same columns batch after batch."""
    quote = _POSTGRESQL.identifier_preparer.quote
    selected: list[str] = []
    for number, name in enumerate(constants):
        cast = f"CAST(:c{number} AS {_sql_type(table, name, _POSTGRESQL)})"
        selected.append(_as_column(table, name, cast))
    arrays = []
    for number, name in enumerate(columns):
        arrays.append(f"CAST(:p{number} AS {_sql_type(table, name, _POSTGRESQL)}[])")
        selected.append(_as_column(table, name, f"v.c{number}"))
    names = ", ".join(quote(name) for name in [*constants, *columns])
    aliases = ", ".join(f"c{number}" for number in range(len(columns)))
    back = f" RETURNING {quote(returning)}" if returning else ""
    # Table and column names come from the models, never from input.
    return text(
        f"INSERT INTO {table.name} ({names}) SELECT {', '.join(selected)} "
        f"FROM unnest({', '.join(arrays)}) AS v({aliases}){back}"
    )


def _sql_type(table: Table, name: str, dialect: Any) -> str:
    """The PostgreSQL type a column's values travel as (JSON as its text, cast back)."""
    kind = table.c[name].type
    if isinstance(kind, JSON):
        return "TEXT"
    kind = kind.impl_instance if isinstance(kind, UTCDateTime) else kind
    return str(kind.compile(dialect))


def _as_column(table: Table, name: str, expression: str) -> str:
    return f"CAST({expression} AS JSON)" if isinstance(table.c[name].type, JSON) else expression


def _column_values(table: Table, name: str, column: Sequence[Any], dialect: Any) -> list[Any]:
    """A column's values as PostgreSQL takes them: naive UTC times, JSON as text (each
    distinct object converted once)."""
    kind = table.c[name].type
    if isinstance(kind, UTCDateTime):
        convert: Any = lambda value: kind.process_bind_param(value, dialect)  # noqa: E731
    elif isinstance(kind, JSON):
        convert = json.dumps
    else:
        return list(column)
    done: dict[int, Any] = {}
    converted = []
    for value in column:
        key = id(value)
        if key not in done:
            done[key] = None if value is None else convert(value)
        converted.append(done[key])
    return converted


async def update_rows(
    session: AsyncSession, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Set each row's columns (`columns[0]` is the id, the others the new values)."""
    if not rows:
        return
    key, values = columns[0], list(columns[1:])
    if not _is_postgresql(session):
        statement = (
            update(table)
            .where(table.c[key] == bindparam(f"b_{key}"))
            .values({name: bindparam(f"b_{name}") for name in values})
        )
        await session.execute(
            statement,
            [{f"b_{name}": v for name, v in zip(columns, row, strict=True)} for row in rows],
        )
        return
    records = _copy_records(table, columns, rows)
    arrays = {f"p{n}": [record[n] for record in records] for n in range(len(columns))}
    await session.execute(_unnest_update(table, tuple(columns)), arrays)


@lru_cache(maxsize=256)
def _unnest_update(table: Table, columns: tuple[str, ...]) -> TextClause:
    """`update_rows`' statement on PostgreSQL, built once per shape."""
    quote = _POSTGRESQL.identifier_preparer.quote
    key, values = columns[0], columns[1:]
    casts = []
    for number, name in enumerate(columns):
        kind = table.c[name].type
        kind = kind.impl_instance if isinstance(kind, UTCDateTime) else kind
        casts.append(f"CAST(:p{number} AS {kind.compile(_POSTGRESQL)}[])")
    names = ", ".join(quote(name) for name in columns)
    assignments = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in values)
    # Table and column names come from the models, never from input.
    return text(
        f"UPDATE {table.name} SET {assignments} FROM unnest({', '.join(casts)}) AS v({names}) "
        f"WHERE {table.name}.{quote(key)} = v.{quote(key)}"
    )


def insert_skipping_existing(
    session_or_dialect: AsyncSession | str, model: Any, unique: list[str]
) -> Any:
    """INSERT into `model` that skips rows whose `unique` columns are already there, for
    the session's back end (or the dialect named)."""
    name = (
        session_or_dialect
        if isinstance(session_or_dialect, str)
        else session_or_dialect.get_bind().dialect.name
    )
    dialect = postgresql if name == "postgresql" else sqlite
    return dialect.insert(model).on_conflict_do_nothing(index_elements=unique)
