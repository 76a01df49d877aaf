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
    processors = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    ]
    preparer = dialect.identifier_preparer
    if dialect.name == "postgresql":
        _bulk_insert_arrays(session, table, rows, names, processors, skip_conflicts)
        return
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    # Names are the table's own columns (``table.c[name]`` above refuses any other), quoted by
    # the dialect; every value travels as a parameter.
    statement = (
        f"INSERT INTO {preparer.format_table(table)} "  # noqa: S608
        f"({', '.join(preparer.quote(name) for name in names)}) "
        f"VALUES ({', '.join([marker] * len(names))})"
        + (" ON CONFLICT DO NOTHING" if skip_conflicts else "")
    )
    pick = itemgetter(*names)
    processed = [(i, _remembering(p)) for i, p in enumerate(processors) if p is not None]
    if len(names) == 1:
        parameters: list[Any] = [(pick(row),) for row in rows]
    elif not processed:
        parameters = [pick(row) for row in rows]
    else:
        parameters = []
        for row in rows:
            values = list(pick(row))
            for index, process in processed:
                values[index] = process(values[index])
            parameters.append(tuple(values))
    connection.exec_driver_sql(statement, parameters)


def _bulk_insert_arrays(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    names: list[str],
    processors: Sequence[Callable[[Any], Any] | None],
    skip_conflicts: bool,
) -> None:
    """PostgreSQL: one statement for the whole batch, each column bound as one typed array
    and zipped back into rows by ``unnest`` — ``executemany`` runs the statement once per
    row, a round of server work each."""
    connection = session.connection()
    dialect = connection.dialect
    preparer = dialect.identifier_preparer
    columns = []
    for name, process in zip(names, processors, strict=True):
        values = [row[name] for row in rows]
        if process is not None:
            process = _remembering(process)
            values = [process(value) for value in values]
        columns.append(values)
    casts = [table.c[name].type.dialect_impl(dialect).compile(dialect=dialect) for name in names]
    statement = (
        f"INSERT INTO {preparer.format_table(table)} "  # noqa: S608 - names are the table's own
        f"({', '.join(preparer.quote(name) for name in names)}) "
        f"SELECT * FROM unnest({', '.join(f'%s::{cast}[]' for cast in casts)})"
        + (" ON CONFLICT DO NOTHING" if skip_conflicts else "")
    )
    connection.exec_driver_sql(statement, tuple(columns))


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
