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


def test_a_long_drain_stops_every_two_seconds_for_the_periodic_jobs(
    tidings: Tidings, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large send (here a source whose every batch is full and slow) must not starve the
    heartbeat and crash recovery: the pass looks at its periodic jobs between batches."""
    from tidings.scheduler import worker as worker_module

    monkeypatch.setattr(worker_module, "PASS_SECONDS", 0.5)
    runs: list[str] = []
    probe = PeriodicJob("probe", timedelta(seconds=1))
    tidings.periodic.append(PeriodicTask(probe, lambda _s, now: runs.append(now.isoformat())))

    class Backlog:
        name = "backlog"
        batches = 0

        def run_batch(self, session: Session, *, now: object, limit: int) -> int:
            self.batches += 1
            clock.advance(timedelta(seconds=1))  # the batch's work takes a (virtual) second
            threading.Event().wait(0.2)  # and a little real time
            return limit if self.batches < 12 else 0

    worker = tidings.make_worker(sources=[Backlog()])
    worker.run_once()
    assert len(runs) >= 4, runs  # not once for the whole drain


def _sends_claimed_by(tidings: Tidings, clock: VirtualClock, claimers: list[str]) -> None:
    """One e-mail per claimer, left ``sending`` under that worker's claim, never on the wire."""
    from tests.conftest import make_tenant
    from tidings.contacts import service as contacts
    from tidings.messaging.orm import Message
    from tidings.workspaces import service as workspaces

    tenant = make_tenant(tidings, "lease-shop")
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        contact, _ = contacts.upsert_contact(
            session,
            workspace=workspace,
            data={"email": "a@b.example"},
            match_on=["email"],
            source="api",
            now=clock.now(),
        )
        for claimer in claimers:
            session.add(
                Message(
                    workspace_id=workspace.id,
                    contact_id=contact.id,
                    direction="out",
                    kind="text",
                    channel="email",
                    content={},
                    status="sending",
                    claimed_by=claimer,
                    attempts=1,
                    created_at=clock.now(),
                    updated_at=clock.now(),
                )
            )


def _claims(tidings: Tidings) -> dict[str | None, str]:
    from tidings.messaging.orm import Message

    with tidings.db.reading() as session:
        return dict(session.execute(select(Message.claimed_by, Message.status)).all())


def test_a_dead_workers_sends_are_recovered_once_its_lease_runs_out_not_before(
    tidings: Tidings, clock: VirtualClock
) -> None:
    """Recovery keys on who claimed a send and whether that worker still beats: seconds after
    a crash, instead of minutes of age; a live worker's slow send is never taken from it."""
    from tidings.messaging import service as messaging

    _sends_claimed_by(tidings, clock, ["host-a:1", "host-b:2"])
    with tidings.db.transaction() as session:
        # host-a still beats; host-b's heartbeat is older than the lease: it died.
        recovered = messaging.recover_in_flight(session, now=clock.now(), live_workers=["host-a:1"])
    assert recovered == 1
    assert _claims(tidings) == {"host-a:1": "sending", None: "queued"}  # sent again


def test_the_recovering_worker_never_takes_back_its_own_sends_whatever_its_last_beat(
    tidings: Tidings, clock: VirtualClock
) -> None:
    """A stalled heartbeat thread, or a virtual clock running faster than the beats, leaves
    this worker's beat older than the lease; it is alive all the same, since it is the one
    running the recovery, and its sends in flight stay its own."""
    this_worker = service.worker_identity()[0]
    _sends_claimed_by(tidings, clock, [this_worker, "host-b:2"])
    recovery = next(t for t in tidings.periodic if t.job.name == "messaging.recover_in_flight")
    with tidings.db.transaction() as session:
        session.add(
            WorkerHeartbeat(
                worker_id=this_worker,
                hostname="here",
                pid=1,
                started_at=clock.now() - timedelta(hours=1),
                last_seen_at=clock.now() - timedelta(hours=1),
                processed=0,
            )
        )
    with tidings.db.transaction() as session:
        recovery.run(session, clock.now())
    assert _claims(tidings) == {this_worker: "sending", None: "queued"}
