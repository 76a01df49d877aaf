"""Declarative base, shared column types and mixins for every table."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
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
