"""The one place that reads the time.

Everything else takes a :class:`Clock` (or a ``now`` argument) so that sequences, caps and
windows can be run on a :class:`VirtualClock` in previews, tests and the demo's fast-forward.
All datetimes are aware and in UTC.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    """A source of the current time."""

    def now(self) -> datetime:
        """Return the current time, aware, in UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, for measuring durations."""
        return time.monotonic()


class VirtualClock:
    """A clock that only moves when told to; ``sleep`` advances it instead of waiting."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(timedelta(seconds=seconds))

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and return the new time.

        Raises:
            ValueError: if ``delta`` is negative; virtual time never runs backwards.
        """
        if delta < timedelta(0):
            raise ValueError("a virtual clock cannot go backwards")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment``, which must not be earlier than the current time."""
        self.advance(ensure_utc(moment) - self.now())


class SharedVirtualClock(VirtualClock):
    """A virtual clock kept in a file, so that one process (a test, a demo's fast-forward)
    moves the time of others (``tidings worker`` with ``TIDINGS_CLOCK_FILE``).

    Every ``now`` reads the file: the controller may move it at any moment. ``sleep`` waits
    for real, since only the controller moves this time.
    """

    def __init__(self, path: Path, start: datetime | None = None) -> None:
        self.path = path
        if start is not None:
            self._write(ensure_utc(start))
        super().__init__(self._read())

    def now(self) -> datetime:
        return self._read()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("a virtual clock cannot go backwards")
        with self._lock:
            moved = self._read() + delta
            self._write(moved)
            return moved

    def _read(self) -> datetime:
        try:
            return ensure_utc(datetime.fromisoformat(self.path.read_text().strip()))
        except (OSError, ValueError) as error:
            raise ValueError(f"the clock file {self.path} holds no time: {error}") from None

    def _write(self, moment: datetime) -> None:
        # Written aside and renamed over: a reader never sees half a time.
        staging = self.path.with_name(self.path.name + ".next")
        staging.write_text(moment.isoformat())
        os.replace(staging, self.path)


def ensure_utc(moment: datetime) -> datetime:
    """Return ``moment`` as an aware UTC datetime.

    Raises:
        ValueError: for a naive datetime, whose meaning cannot be known.
    """
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not accepted; give a time zone")
    return moment.astimezone(UTC)
