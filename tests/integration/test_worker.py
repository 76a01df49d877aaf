"""The worker: periodic slots run once across workers, jobs retry then die, claims don't overlap."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock
from tidings.scheduler import service
from tidings.scheduler.domain import PeriodicJob
from tidings.scheduler.orm import BackgroundJob, PeriodicRun, WorkerHeartbeat
from tidings.scheduler.worker import JobHandler, PeriodicTask


def test_a_periodic_slot_runs_once_however_many_workers_try(
    tidings: Tidings, clock: VirtualClock
) -> None:
    runs: list[str] = []
    job = PeriodicJob("digest", timedelta(minutes=15))
    tidings.periodic.append(PeriodicTask(job, lambda _s, now: runs.append(now.isoformat())))
    workers = [tidings.make_worker() for _ in range(3)]
    for worker in workers:
        worker.run_once()
    assert len(runs) == 1
    clock.advance(timedelta(minutes=15))
    for worker in workers:
        worker.run_once()
    assert len(runs) == 2
    with tidings.db.reading() as session:
        slots = session.scalars(select(PeriodicRun).where(PeriodicRun.name == "digest")).all()
        assert len(slots) == 2 and all(s.finished_at is not None for s in slots)
        assert session.scalars(select(WorkerHeartbeat)).all()


def test_a_failing_periodic_job_records_its_error_and_the_worker_goes_on(tidings: Tidings) -> None:
    def explode(_session: Session, _now: object) -> None:
        raise RuntimeError("CRM unreachable")

    tidings.periodic.append(PeriodicTask(PeriodicJob("sync", timedelta(minutes=5)), explode))
    tidings.make_worker().run_once()
    with tidings.db.reading() as session:
        run = session.scalar(select(PeriodicRun).where(PeriodicRun.name == "sync"))
    assert run is not None and run.error == "RuntimeError: CRM unreachable"


def test_background_jobs_retry_with_backoff_then_die_keeping_the_error(
    tidings: Tidings, clock: VirtualClock
) -> None:
    calls: list[int] = []

    def flaky(_session: Session, job: BackgroundJob, _now: object) -> None:
        calls.append(job.id)
        raise ValueError("boom")

    tidings.job_handlers["flaky"] = JobHandler("flaky", flaky)
    with tidings.db.transaction() as session:
        service.enqueue_job(
            session, kind="flaky", payload={}, now=clock.now(), idempotency_key="k1"
        )
        service.enqueue_job(
            session, kind="flaky", payload={}, now=clock.now(), idempotency_key="k1"
        )
    worker = tidings.make_worker()
    worker.run_once()
    worker.run_once()  # not due yet: backoff
    assert len(calls) == 1
    clock.advance(timedelta(minutes=1))
    worker.run_once()
    clock.advance(timedelta(minutes=2))
    worker.run_once()
    assert len(calls) == 3
    with tidings.db.reading() as session:
        (job,) = session.scalars(select(BackgroundJob)).all()
    assert (job.state, job.attempts, job.last_error) == ("dead", 3, "ValueError: boom")


def test_a_successful_job_commits_its_work(tidings: Tidings) -> None:
    def note(session: Session, job: BackgroundJob, now: object) -> None:
        service.enqueue_job(session, kind="follow-up", payload={"from": job.id}, now=job.due_at)

    tidings.job_handlers["note"] = JobHandler("note", note)
    with tidings.db.transaction() as session:
        service.enqueue_job(session, kind="note", payload={}, now=tidings.clock.now())
    tidings.make_worker().run_once()
    with tidings.db.reading() as session:
        states = {j.kind: j.state for j in session.scalars(select(BackgroundJob))}
    assert states == {"note": "done", "follow-up": "queued"}


@pytest.mark.postgres_only
def test_two_workers_claim_disjoint_batches_with_skip_locked(tidings: Tidings) -> None:
    now = tidings.clock.now()
    with tidings.db.transaction() as session:
        for n in range(10):
            service.enqueue_job(session, kind="x", payload={"n": n}, now=now)
    first_claimed = threading.Event()
    release = threading.Event()
    claims: dict[str, list[int]] = {}

    def claim(name: str, hold: bool) -> None:
        with tidings.db.transaction() as session:
            claims[name] = [
                j.id for j in service.claim_jobs(session, kinds=["x"], now=now, limit=6)
            ]
            if hold:
                first_claimed.set()
                release.wait(10)

    holder = threading.Thread(target=claim, args=("a", True))
    holder.start()
    first_claimed.wait(10)
    claim("b", False)
    release.set()
    holder.join()
    assert len(claims["a"]) == 6 and len(claims["b"]) == 4
    assert not set(claims["a"]) & set(claims["b"])
