"""Sessions and the one place where transactions are committed.

Services never commit: the edge (an API request, a CLI command, a worker batch) opens a
:func:`transaction`, calls services, and the transaction commits once on success or rolls back
on any error, so a failure leaves all of its effects or none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tidings.db.engine import read_only_engine


class Database:
    """An engine and its session factories."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)
        self._reader = sessionmaker(bind=read_only_engine(engine), expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write session committed once when the block succeeds, rolled back otherwise."""
        with self._writer() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only session; nothing it does is committed.

        Closing (rather than rolling back) ends the transaction without expiring the objects
        read, so they stay usable, detached, after the block.
        """
        with self._reader() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
