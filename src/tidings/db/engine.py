"""Engines for SQLite (embedded) and PostgreSQL (scale-out).

SQLite runs in WAL mode with a busy timeout. Its write transactions start with
``BEGIN IMMEDIATE`` so two writers never both read and then fail to upgrade their lock; read-only
sessions use a plain deferred ``BEGIN`` and run alongside a writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_BEGIN_OPTION = "tidings_sqlite_begin"


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """Create the engine for ``url``, creating the SQLite file's folder when needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo)
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        echo=echo,
        json_serializer=json_text,
        json_deserializer=orjson.loads,
        # psycopg prepares a statement after its fifth run, and PostgreSQL then may switch to
        # a generic plan, blind to the parameters: for ``column = ANY(<500 ids>)`` on a table
        # whose statistics are still young it picked a scan of the whole table (0.4 s a
        # query in the sequence benchmark, against 2 ms). Plans are made for the values.
        connect_args={"options": "-c plan_cache_mode=force_custom_plan"},
    )


def json_text(value: Any) -> str:
    """JSON columns are written by orjson: the same JSON as the standard library's, compact
    and in UTF-8, several times faster (mass sends write one document per recipient)."""
    return orjson.dumps(value).decode()


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        # The database holds customers' data: its folder and files are the owner's alone.
        Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False},
        json_serializer=json_text,
        json_deserializer=orjson.loads,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if database and database != ":memory:":
            _owner_only(Path(database))
        # Take transaction control away from pysqlite so that we can emit BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql("BEGIN" if mode == "DEFERRED" else "BEGIN IMMEDIATE")

    return engine


def _owner_only(database: Path) -> None:
    """The SQLite file and its journals, readable and writable by their owner only."""
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        try:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
        except FileNotFoundError:
            continue


def read_only_engine(engine: Engine) -> Engine:
    """The same engine, whose SQLite transactions do not take the write lock."""
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})
