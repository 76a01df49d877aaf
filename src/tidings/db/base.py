"""Declarative base, shared column types and mixins for every table."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, ClassVar

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Connection,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    Select,
    Table,
    any_,
    bindparam,
    func,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable constraint names so that Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
IdType = BigInteger().with_variant(Integer(), "sqlite")

# JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JsonType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes stored in UTC; naive values are refused rather than guessed.

    SQLite has no time zone type: values are stored as naive UTC text in SQLAlchemy's own
    format (``2026-11-22 06:00:00.123456``), so text order is time order. The text is made
    and read by ``datetime.isoformat``/``fromisoformat`` (C code) instead of SQLAlchemy's
    per-value formatting, which was a fifth of the cost of writing a CSV import batch.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_text

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _sqlite_datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_datetime(value: str | datetime | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JsonType,
    }


class WorkspaceOwned:
    """Columns of every row that belongs to a workspace (tenant)."""

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )


def workspace_fk() -> Mapped[int]:
    """A ``workspace_id`` column for tables that do not use :class:`WorkspaceOwned`."""
    return mapped_column(IdType, ForeignKey("workspaces.id", ondelete="CASCADE"))


def workspace_through_parent() -> Mapped[int]:
    """``workspace_id`` without a foreign key, for the hot append-only tables whose every row
    hangs off a parent of the same workspace (a contact) by a cascading foreign key: deleting
    the workspace deletes the contact, which deletes the row. A second check per row, on the
    workspace, cost a fifth of an inbound message's database time on PostgreSQL (measured,
    #23) and guarded nothing the contact's key does not. The index stays: queries filter on
    it. ``tests/integration/test_referential_integrity.py`` holds deletions to leaving no
    orphan."""
    return mapped_column(IdType, index=True)


def table_of(model: type[Base]) -> Table:
    """The Core table of a mapped class, for set-based statements on hot paths."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a single table")
    return table


def allocate_ids(session: Session, table: Table, count: int) -> list[int]:
    """Reserve ``count`` primary keys for rows about to be inserted with explicit ids.

    Set-based inserts then need no ``RETURNING`` (which costs more than the insert itself on
    the hot import path). On PostgreSQL the ids come from the table's sequence, safe with many
    writers; on SQLite the caller's write transaction (``BEGIN IMMEDIATE``) makes it the only
    writer, so the ids after the current maximum are free.

    Precondition: runs inside the caller's write transaction.
    """
    if count <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": count},
        )
        return [int(value) for (value,) in rows]
    highest = session.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
    return list(range(int(highest) + 1, int(highest) + 1 + count))


def insert_new(session: Session, table: Table, rows: list[dict[str, Any]]) -> int:
    """INSERT … ON CONFLICT DO NOTHING for many rows at once; returns how many went in.

    The count comes from ``RETURNING``: ``rowcount`` is unreliable through psycopg's paths.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    builder = pg_insert if dialect == "postgresql" else sqlite_insert
    # executemany form: the statement is compiled once and cached, whatever the row count
    # (a multi-VALUES literal is compiled anew for every call).
    statement = builder(table).on_conflict_do_nothing().returning(literal(1))
    return len(session.execute(statement, rows).all())


def bulk_insert(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    skip_conflicts: bool = False,
) -> None:
    """INSERT many rows through the driver's ``executemany``, for the hottest write paths.

    SQLAlchemy's statement path processes every parameter of every row in Python (for a
    mass send that was half the time). Here each column's bind processor — the same one
    SQLAlchemy would use: UTC text on SQLite, JSON, booleans — is looked up once and applied
    in one comprehension, and the driver gets plain tuples. All rows must have the keys of
    the first. ``skip_conflicts`` adds ``ON CONFLICT DO NOTHING`` (both dialects).

    Precondition: runs inside the caller's write transaction.
    """
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    names = list(rows[0])
    preparer = dialect.identifier_preparer
    # Names are the table's own columns (``table.c[name]`` in ``_processors`` refuses any
    # other), quoted by the dialect; every value travels as a parameter.
    target = (
        f"INSERT INTO {preparer.format_table(table)} "
        f"({', '.join(preparer.quote(name) for name in names)}) "
    )
    conflicts = " ON CONFLICT DO NOTHING" if skip_conflicts else ""
    if dialect.name == "postgresql":
        # One statement for the whole batch (``executemany`` runs the statement once per row,
        # a round of server work each), its rows sent as one JSON document.
        columns = _json_columns(table, names, dialect)
        picked = ", ".join(_json_value(table, name, dialect) for name in names)
        connection.exec_driver_sql(
            f"{target}SELECT {picked} FROM json_to_recordset(%s::json) AS v({columns})"  # noqa: S608
            + conflicts,
            (_json_rows(table, rows, names, dialect),),
        )
        return
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(
        f"{target}VALUES ({', '.join([marker] * len(names))}){conflicts}",
        _driver_rows(table, rows, names, dialect),
    )


def bulk_update(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    key: str = "id",
    keep_existing: Sequence[str] = (),
) -> None:
    """UPDATE many rows, each with values of its own, found by ``key``: ``bulk_insert``'s
    twin (driver ``executemany`` on SQLite, one ``UPDATE … FROM unnest(…)`` on PostgreSQL).

    Every row has the keys of the first, ``key`` among them. A column named in
    ``keep_existing`` is only filled where it is still NULL.

    Precondition: runs inside the caller's write transaction.
    """
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    preparer = dialect.identifier_preparer
    names = [key, *(name for name in rows[0] if name != key)]
    quoted = {name: preparer.quote(name) for name in names}
    name_of_table = preparer.format_table(table)

    def assigned(name: str, value: str) -> str:
        if name in keep_existing:
            return f"{quoted[name]} = COALESCE({name_of_table}.{quoted[name]}, {value})"
        return f"{quoted[name]} = {value}"

    if dialect.name == "postgresql":
        changes = ", ".join(assigned(name, _json_value(table, name, dialect)) for name in names[1:])
        connection.exec_driver_sql(
            f"UPDATE {name_of_table} SET {changes} "  # noqa: S608 - the table's own columns
            f"FROM json_to_recordset(%s::json) AS v({_json_columns(table, names, dialect)}) "
            f"WHERE {name_of_table}.{quoted[key]} = {_json_value(table, key, dialect)}",
            (_json_rows(table, rows, names, dialect),),
        )
        return
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    changes = ", ".join(assigned(name, marker) for name in names[1:])
    parameters = [(*values[1:], values[0]) for values in _driver_rows(table, rows, names, dialect)]
    connection.exec_driver_sql(
        f"UPDATE {name_of_table} SET {changes} WHERE {quoted[key]} = {marker}",  # noqa: S608
        parameters,
    )


def _processors(
    table: Table, names: list[str], dialect: Dialect
) -> list[tuple[int, Callable[[Any], Any]]]:
    """Each column's bind processor (position, processor), for the columns that have one."""
    found = []
    for index, name in enumerate(names):
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            found.append((index, _remembering(process)))
    return found


def _driver_rows(
    table: Table, rows: list[dict[str, Any]], names: list[str], dialect: Dialect
) -> list[tuple[Any, ...]]:
    pick = itemgetter(*names)
    processed = _processors(table, names, dialect)
    if len(names) == 1:
        return [(pick(row),) for row in rows]
    if not processed:
        return [pick(row) for row in rows]
    parameters = []
    for row in rows:
        values = list(pick(row))
        for index, process in processed:
            values[index] = process(values[index])
        parameters.append(tuple(values))
    return parameters


def _json_columns(table: Table, names: list[str], dialect: Dialect) -> str:
    """PostgreSQL: the column list of ``json_to_recordset`` for ``names``.

    A batch travels as one JSON document, written by orjson in C and read by the server in
    C: binding each column as an array instead spent ≈3 µs of Python per value escaping
    array text (a 500-row outbox batch took 10 ms to encode). Integer columns are read as
    numbers and cast (``_json_value``), so 2.0 is taken as SQLAlchemy would take it.
    """
    preparer = dialect.identifier_preparer
    return ", ".join(
        f"{preparer.quote(name)} "
        + (
            "NUMERIC"
            if isinstance(table.c[name].type, Integer)
            else table.c[name].type.dialect_impl(dialect).compile(dialect=dialect)
        )
        for name in names
    )


def _json_value(table: Table, name: str, dialect: Dialect) -> str:
    """How a statement reads column ``name`` of the ``v`` record set."""
    quoted = f"v.{dialect.identifier_preparer.quote(name)}"
    kind = table.c[name].type
    if isinstance(kind, Integer):
        return f"CAST({quoted} AS {kind.dialect_impl(dialect).compile(dialect=dialect)})"
    return quoted


def _json_rows(table: Table, rows: list[dict[str, Any]], names: list[str], dialect: Dialect) -> str:
    """The rows as one JSON array of objects. JSON columns stay documents (their own bind
    processor would make them strings); other processors run (the UTC guard of times)."""
    processed = [
        (names[index], process)
        for index, process in _processors(table, names, dialect)
        if not isinstance(table.c[names[index]].type, JSON)
    ]
    if processed:
        rows = [dict(row) for row in rows]
        for row in rows:
            for name, process in processed:
                row[name] = process(row[name])
    return orjson.dumps(rows).decode()  # an unknown type fails here, loudly


def _remembering(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process`` with its last answer kept: a batch's rows share one ``now`` object, whose
    text is then made once. Keyed by identity, so only the very same object is answered
    from memory (nothing is mutated while one statement's parameters are built)."""
    last: list[Any] = [object(), None]

    def run(value: Any) -> Any:
        if value is not last[0]:
            last[0], last[1] = value, process(value)
        return last[1]

    return run


def among(session: Session | Connection, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN values`` with the values bound as one parameter: a JSON array read by
    ``json_each`` on SQLite, an array compared with ``= ANY`` on PostgreSQL.

    A plain IN list makes SQLAlchemy render and process every element: for the thousands of
    ids of a mass-send chunk that cost four times the query itself.
    """
    listed = list(values)
    if _dialect_name(session) == "postgresql":
        condition: ColumnElement[bool] = column == any_(
            bindparam(None, listed, type_=ARRAY(column.type))
        )
        return condition
    return column.in_(values_of(session, listed, column.type))  # type: ignore[no-any-return]


def values_of(session: Session | Connection, values: list[Any], kind: Any) -> Select[Any]:
    """A one-column ``value`` selectable of ``values``, bound as a single parameter, for
    set-based statements (``INSERT … SELECT``) over thousands of ids."""
    if _dialect_name(session) == "postgresql":
        return select(func.unnest(bindparam(None, values, type_=ARRAY(kind))).label("value"))
    return select(literal_column("value")).select_from(func.json_each(json_text_of(values)))


def _dialect_name(bind: Session | Connection) -> str:
    if isinstance(bind, Connection):
        return bind.dialect.name
    return bind.get_bind().dialect.name


def json_text_of(values: list[Any]) -> str:
    return orjson.dumps(values).decode()
