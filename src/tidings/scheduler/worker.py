"""The worker loop shared by ``tidings worker`` and the embedded worker of ``tidings serve``.

Each batch runs in its own transaction: a crash loses at most the batch in flight, whose rows
are claimed again by the next worker. SIGTERM/SIGINT let the current batch finish, then stop.

A pass is bounded in time, not only in rows: after ``PASS_SECONDS`` of work the loop runs its
due periodic jobs (crash recovery among them) before it goes on, and the heartbeat beats from
a thread of its own, so a worker busy with a large send is never taken for dead.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from sqlalchemy.orm import Session

from tidings.db.session import Database
from tidings.kernel.clock import Clock
from tidings.scheduler import service
from tidings.scheduler.domain import PeriodicJob
from tidings.scheduler.orm import BackgroundJob

log = logging.getLogger(__name__)
HEARTBEAT = PeriodicJob("worker.heartbeat", timedelta(seconds=5))
HEARTBEAT_SECONDS = 5.0
MAX_BATCHES_PER_PASS = 50
PASS_SECONDS = 2.0  # work before the loop looks at its periodic jobs again
# Seconds a pass may spend waiting for requests to finish, all its batches together: under a
# steady stream of requests the worker is delayed, never stopped (a wait per batch made a
# pass of a dozen sources last half a minute, and work at the end of the list never ran).
YIELD_LIMIT = 2.0


class WorkSource(Protocol):
    """Due work of one kind: claims up to ``limit`` rows and processes them."""

    name: str

    def run_batch(self, session: Session, *, now: datetime, limit: int) -> int:
        """Process one batch inside ``session``'s transaction; return how many rows it handled."""
        ...


@runtime_checkable
class PassSource(Protocol):
    """Due work that must not hold one transaction throughout (e.g. network calls): it opens
    its own transactions around the parts that touch the database."""

    name: str

    def run_pass(self, db: Database, clock: Clock, limit: int) -> int:
        """Claim and handle up to ``limit`` rows; return how many rows it took."""
        ...


@dataclass(frozen=True)
class PeriodicTask:
    job: PeriodicJob
    run: Callable[[Session, datetime], None]


@dataclass(frozen=True)
class JobHandler:
    kind: str
    handle: Callable[[Session, BackgroundJob, datetime], None]
    # Told when a job of this kind is given up (dead): e.g. the rule run that asked for a
    # webhook then shows as failed with the reason, not as fired.
    on_dead: Callable[[Session, BackgroundJob, datetime], None] | None = None


class PermanentJobError(Exception):
    """A background job failed in a way no retry can mend (e.g. its address is refused)."""


@dataclass
class BackgroundJobSource:
    """Runs queued background jobs; each job in a savepoint so one failure spares the others."""

    handlers: dict[str, JobHandler]
    name: str = "background_jobs"

    def run_batch(self, session: Session, *, now: datetime, limit: int) -> int:
        jobs = service.claim_jobs(session, kinds=list(self.handlers), now=now, limit=limit)
        for job in jobs:
            try:
                with session.begin_nested():
                    self.handlers[job.kind].handle(session, job, now)
                service.finish_job(job, now=now)
            except PermanentJobError as error:
                log.warning("background job %s (%s) cannot succeed: %s", job.id, job.kind, error)
                service.fail_job(job, error=f"{error}", now=now, permanent=True)
                self._report_dead(session, job, now)
            except Exception as error:  # a job's failure is recorded, never lost
                log.exception("background job %s (%s) failed", job.id, job.kind)
                service.fail_job(job, error=f"{type(error).__name__}: {error}", now=now)
                self._report_dead(session, job, now)
        return len(jobs)

    def _report_dead(self, session: Session, job: BackgroundJob, now: datetime) -> None:
        report = self.handlers[job.kind].on_dead
        if job.state != "dead" or report is None:
            return
        try:
            with session.begin_nested():
                report(session, job, now)
        except Exception:
            log.exception("could not report the failure of background job %s", job.id)


@dataclass
class Worker:
    """Claims and runs due work until told to stop."""

    db: Database
    clock: Clock
    sources: Sequence[WorkSource | PassSource] = ()
    periodic: Sequence[PeriodicTask] = ()
    batch_size: int = 500
    poll_seconds: float = 1.0
    stop_event: threading.Event = field(default_factory=threading.Event)
    processed: int = 0
    # In ``serve`` the worker shares one process (one GIL, one SQLite writer) with the web
    # requests: it waits while they run, at most ``YIELD_LIMIT`` seconds per batch.
    yield_to: Callable[[], bool] | None = None

    def __post_init__(self) -> None:
        self._yield_until = 0.0
        self._tried_slots: dict[str, datetime] = {}
        self.worker_id, _, _ = service.worker_identity()
        self.started_at = self.clock.now()
        self.periodic = [PeriodicTask(HEARTBEAT, self._beat), *self.periodic]

    def _beat(self, session: Session, now: datetime) -> None:
        service.beat(
            session,
            worker_id=self.worker_id,
            started_at=self.started_at,
            processed=self.processed,
            now=now,
        )

    def run_once(self) -> int:
        """Run due periodic slots, then drain each source batch by batch; return rows handled.

        Every ``PASS_SECONDS`` of work the due periodic slots run again, whatever the backlog.
        """
        handled = 0
        self._run_due_periodic()
        since_periodic = time.monotonic()
        self._yield_until = since_periodic + YIELD_LIMIT
        for source in self.sources:
            # A source may take fewer rows per batch than asked: a batch that full means more.
            limit = min(self.batch_size, getattr(source, "batch_limit", self.batch_size))
            for _ in range(MAX_BATCHES_PER_PASS):
                if self.stop_event.is_set():
                    self.processed += handled
                    return handled
                self._give_way()
                if isinstance(source, PassSource):
                    count = source.run_pass(self.db, self.clock, limit)
                else:
                    with self.db.transaction(background=True) as session:
                        count = source.run_batch(session, now=self.clock.now(), limit=limit)
                handled += count
                if time.monotonic() - since_periodic >= PASS_SECONDS:
                    self._run_due_periodic()
                    since_periodic = time.monotonic()
                if count < limit:
                    break
        self.processed += handled
        return handled

    def _run_due_periodic(self) -> None:
        for task in self.periodic:
            self._run_periodic(task)

    def _give_way(self) -> None:
        if self.yield_to is None:
            return
        while self.yield_to() and time.monotonic() < self._yield_until:
            time.sleep(0.002)

    def _run_periodic(self, task: PeriodicTask) -> None:
        now = self.clock.now()
        slot = task.job.slot_for(now)
        if self._tried_slots.get(task.job.name) == slot:
            return  # this slot is taken, by this worker or another: no transaction to learn it
        with self.db.transaction(background=True) as session:
            run = service.claim_periodic_slot(
                session, job=task.job, worker_id=self.worker_id, now=now
            )
            self._tried_slots[task.job.name] = slot
            if run is None:
                return
            try:
                with session.begin_nested():
                    task.run(session, now)
            except Exception as error:
                log.exception("periodic job %s failed", task.job.name)
                run.error = f"{type(error).__name__}: {error}"[:4000]
            run.finished_at = self.clock.now()

    def run_forever(self) -> None:
        """Loop until :meth:`stop`; sleeps ``poll_seconds`` whenever a pass found nothing."""
        log.info("worker %s started", self.worker_id)
        heart = threading.Thread(target=self._keep_beating, name="heartbeat", daemon=True)
        heart.start()
        while not self.stop_event.is_set():
            try:
                handled = self.run_once()
            except Exception:  # keep the worker alive; the batch rolled back and will be retried
                log.exception("worker pass failed")
                handled = 0
            if handled == 0:
                self.stop_event.wait(self.poll_seconds)
        for source in self.sources:
            close = getattr(source, "close", None)
            if callable(close):
                close()  # e.g. the dispatcher's sending threads
        log.info("worker %s stopped after %d rows", self.worker_id, self.processed)

    def _keep_beating(self) -> None:
        """Beat every ``HEARTBEAT_SECONDS`` until stopped: the lease of this worker's claims."""
        while not self.stop_event.wait(HEARTBEAT_SECONDS):
            try:
                with self.db.transaction(background=True) as session:
                    self._beat(session, self.clock.now())
            except Exception:  # a missed beat is retried at the next one
                log.exception("heartbeat failed")

    def stop(self) -> None:
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        """Let SIGTERM and SIGINT finish the current batch and then stop the loop."""

        def _graceful(signum: int, _frame: object) -> None:
            log.info("signal %d: finishing the current batch, then stopping", signum)
            self.stop()

        signal.signal(signal.SIGTERM, _graceful)
        signal.signal(signal.SIGINT, _graceful)
