"""Sessions and the one place where transactions are committed.

Services never commit: the edge (an API request, a CLI command, a worker batch) opens a
:func:`transaction`, calls services, and the transaction commits once on success or rolls back
on any error, so a failure leaves all of its effects or none.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from tidings.db.engine import read_only_engine

T = TypeVar("T")

# Whether the code running now (a thread, or a request's task and the threads it hands work
# to) holds the writer's turn: a second turn asked for there would wait for itself forever.
_holding_turn: ContextVar[bool] = ContextVar("tidings_holding_write_turn", default=False)


class WriterQueue:
    """Orders this process's SQLite writers: requests first, background work when none wait.

    SQLite has one writer at a time, and its busy handler retries by sleeping: under load a
    writer that keeps coming back (the worker's batches) can starve one that waits (a webhook
    request) past the busy timeout. Here writers queue in arrival order, except that a
    request goes before waiting background work — unless that work has already waited
    ``BACKGROUND_PATIENCE`` or seen ``FOREGROUND_SHARE`` requests go first, so it is delayed
    under load, never stopped, and keeps a share of the turns however many requests come
    (with patience alone, a worker under a steady stream of requests got one turn a second:
    a pass over its dozen sources took twenty). Other processes still meet SQLite's busy
    timeout.

    A turn belongs to the ticket that took it, not to a thread: a web request takes its turn
    on one thread, runs its route on another and commits on a third, while those threads
    serve other requests in between.
    """

    BACKGROUND_PATIENCE = 1.0  # seconds
    FOREGROUND_SHARE = 16  # requests that may go before a waiting background writer

    def __init__(self) -> None:
        self._condition = threading.Condition()
        # (background, since, ticket, turns granted when it came)
        self._waiting: list[tuple[bool, float, int, int]] = []
        self._tickets = itertools.count()
        self._holder: int | None = None
        self._granted = 0

    def _next(self) -> tuple[bool, float, int, int]:
        now = time.monotonic()
        overdue = [
            w
            for w in self._waiting
            if w[0]
            and (
                now - w[1] > self.BACKGROUND_PATIENCE
                or self._granted - w[3] >= self.FOREGROUND_SHARE
            )
        ]
        foreground = [w for w in self._waiting if not w[0]]
        return min(overdue or foreground or self._waiting, key=lambda w: w[2])

    def acquire(self, *, background: bool = False) -> int:
        """Wait for the turn; return the ticket that :meth:`release` gives back."""
        with self._condition:
            entry = (background, time.monotonic(), next(self._tickets), self._granted)
            self._waiting.append(entry)
            while self._holder is not None or self._next() != entry:
                self._condition.wait(timeout=self.BACKGROUND_PATIENCE)
            self._waiting.remove(entry)
            self._holder = entry[2]
            self._granted += 1
            return entry[2]

    def release(self, ticket: int) -> None:
        with self._condition:
            if self._holder != ticket:
                raise RuntimeError(f"write turn {ticket} released by a writer not holding it")
            self._holder = None
            self._condition.notify_all()

    @contextmanager
    def turn(self, *, background: bool = False) -> Iterator[None]:
        """The turn for a block of synchronous code."""
        if _holding_turn.get():
            raise RuntimeError("a write transaction was opened inside another one")
        ticket = self.acquire(background=background)
        holding = _holding_turn.set(True)
        try:
            yield
        finally:
            _holding_turn.reset(holding)
            self.release(ticket)

    @asynccontextmanager
    async def turn_async(self, waiting_room: anyio.CapacityLimiter) -> AsyncIterator[None]:
        """The turn for a request's task, waited for on a thread of ``waiting_room``.

        Waiting never occupies the threads that run routes: were they all waiting here, the
        holder of the turn could find no thread to run its own route on and finish. The wait
        is shielded, so a client that hangs up mid-wait cannot leave a turn taken and never
        given back.
        """
        if _holding_turn.get():
            raise RuntimeError("a write transaction was opened inside another one")
        with anyio.CancelScope(shield=True):
            ticket = await anyio.to_thread.run_sync(self.acquire, limiter=waiting_room)
        # The request's own context: the threads its route runs on inherit it.
        _holding_turn.set(True)
        try:
            yield
        finally:
            _holding_turn.set(False)
            self.release(ticket)


WAITING_ROOM_SIZE = 1000  # requests that may wait for SQLite's writer at once


class Database:
    """An engine and its session factories."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)
        self._reader = sessionmaker(bind=read_only_engine(engine), expire_on_commit=False)
        self._writers = WriterQueue() if engine.dialect.name == "sqlite" else None
        # Requests waiting for the writer wait on threads of their own (see turn_async).
        self._waiting_room = anyio.CapacityLimiter(WAITING_ROOM_SIZE)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self, *, background: bool = False) -> Iterator[Session]:
        """A write session committed once when the block succeeds, rolled back otherwise.

        ``background`` marks worker batches, which on SQLite let waiting requests go first.
        """
        if self._writers is None:
            with self._opened_transaction() as session:
                yield session
            return
        with self._writers.turn(background=background), self._opened_transaction() as session:
            yield session

    @asynccontextmanager
    async def transaction_async(self) -> AsyncIterator[Session]:
        """:meth:`transaction` for a request's task: the turn is waited for without holding
        a route thread; the session is opened, used and committed on worker threads."""
        if self._writers is None:
            async with _on_threads(self._opened_transaction()) as session:
                yield session
            return
        async with (
            self._writers.turn_async(self._waiting_room),
            _on_threads(self._opened_transaction()) as session,
        ):
            yield session

    @asynccontextmanager
    async def reading_async(self) -> AsyncIterator[Session]:
        """:meth:`reading` for a request's task."""
        async with _on_threads(self.reading()) as session:
            yield session

    async def write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a write transaction, from a request's task."""
        async with self.transaction_async() as session:
            return await anyio.to_thread.run_sync(work, session)

    @contextmanager
    def _opened_transaction(self) -> Iterator[Session]:
        with self._writer() as session, session.begin():
            yield session

    @contextmanager
    def statements(self, *, background: bool = False) -> Iterator[Connection]:
        """Like :meth:`transaction`, on a bare Core connection: for hot paths of a statement
        or two with no ORM objects (the dispatchers' wire marks, one commit per group of
        sends), where a session's set-up is most of the cost (≈0.5 ms against ≈0.2 ms)."""
        if self._writers is None:
            with self.engine.begin() as connection:
                yield connection
            return
        with self._writers.turn(background=background), self.engine.begin() as connection:
            yield connection

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


@asynccontextmanager
async def _on_threads(blocking: contextlib.AbstractContextManager[T]) -> AsyncIterator[T]:
    """Enter and leave a blocking context manager on worker threads; leaving is shielded
    from cancellation, so a transaction is always committed or rolled back.

    Each step has a limiter of its own (as FastAPI does for its dependencies' exits): a
    commit must never wait for a free route thread."""
    value = await anyio.to_thread.run_sync(blocking.__enter__, limiter=anyio.CapacityLimiter(1))
    try:
        yield value
    except BaseException as error:
        with anyio.CancelScope(shield=True):
            swallowed = await anyio.to_thread.run_sync(
                blocking.__exit__,
                type(error),
                error,
                error.__traceback__,
                limiter=anyio.CapacityLimiter(1),
            )
        if not swallowed:
            raise
    else:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                blocking.__exit__, None, None, None, limiter=anyio.CapacityLimiter(1)
            )
