"""Claiming work: periodic slots, due rows in batches, background jobs.

Claims run inside the batch's transaction. On PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets many
workers take disjoint batches at once; on SQLite the write transaction (``BEGIN IMMEDIATE``)
already makes the claiming worker the only writer.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from tidings.db.base import bulk_insert, insert_new, table_of
from tidings.scheduler.domain import PeriodicJob, retry_delay
from tidings.scheduler.orm import BackgroundJob, PeriodicRun, WorkerHeartbeat


def insert_ignoring_conflicts(session: Session, model: type[Any], values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING on either database; True when the row was inserted."""
    return insert_new(session, table_of(model), [values]) == 1


def feed_position(
    session: Session, model: type[Any], name: str, *, start: Callable[[], int], now: datetime
) -> Any:
    """The locked row of a reader's position in a feed (``model`` has ``name``, ``position``,
    ``updated_at``); a new reader starts at ``start()`` — the present, so that what happened
    before it ran is not acted on now."""
    query = select(model).where(model.name == name).with_for_update()
    found = session.scalar(query)
    if found is None:
        insert_ignoring_conflicts(
            session, model, {"name": name, "position": start(), "updated_at": now}
        )
        found = session.scalar(query)
    assert found is not None
    return found


def claim_periodic_slot(
    session: Session, *, job: PeriodicJob, worker_id: str, now: datetime
) -> PeriodicRun | None:
    """Claim this slot's run of ``job``; None when another worker already has it."""
    slot = job.slot_for(now)
    inserted = insert_ignoring_conflicts(
        session,
        PeriodicRun,
        {"name": job.name, "scheduled_for": slot, "worker_id": worker_id, "started_at": now},
    )
    if not inserted:
        return None
    return session.scalar(
        select(PeriodicRun).where(PeriodicRun.name == job.name, PeriodicRun.scheduled_for == slot)
    )


def claim_due(
    session: Session,
    model: type[Any],
    *,
    due_column: InstrumentedAttribute[Any],
    now: datetime,
    limit: int,
    extra: Sequence[ColumnElement[bool]] = (),
) -> Sequence[Any]:
    """Lock and return up to ``limit`` rows of ``model`` due at ``now``, oldest due first.

    Precondition: runs inside the batch's write transaction; the rows stay claimed until it
    ends, so the caller must finish (or reschedule) them before committing.
    """
    query = (
        select(model)
        .where(due_column <= now, *extra)
        .order_by(due_column)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(query).all()


def enqueue_job(
    session: Session,
    *,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    workspace_id: int | None = None,
    due_at: datetime | None = None,
    idempotency_key: str | None = None,
    max_attempts: int = 3,
) -> BackgroundJob:
    """Queue a background job in the caller's transaction; a repeated key returns the first."""
    if idempotency_key is not None:
        existing = session.scalar(
            select(BackgroundJob).where(BackgroundJob.idempotency_key == idempotency_key)
        )
        if existing is not None:
            return existing
    job = BackgroundJob(
        workspace_id=workspace_id,
        kind=kind,
        payload=payload,
        state="queued",
        due_at=due_at or now,
        attempts=0,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        created_at=now,
    )
    session.add(job)
    session.flush()
    return job


def enqueue_jobs(
    session: Session,
    *,
    kind: str,
    jobs: Sequence[tuple[int | None, dict[str, Any], str]],
    now: datetime,
    max_attempts: int = 3,
) -> None:
    """Queue many jobs of one kind in one statement: ``(workspace_id, payload,
    idempotency_key)`` each; a key already queued keeps its first job (as
    :func:`enqueue_job`)."""
    bulk_insert(
        session,
        table_of(BackgroundJob),
        [
            {
                "workspace_id": workspace_id,
                "kind": kind,
                "payload": payload,
                "state": "queued",
                "due_at": now,
                "attempts": 0,
                "max_attempts": max_attempts,
                "idempotency_key": key,
                "created_at": now,
            }
            for workspace_id, payload, key in jobs
        ],
        skip_conflicts=True,
    )


def claim_jobs(
    session: Session, *, kinds: Sequence[str], now: datetime, limit: int
) -> Sequence[BackgroundJob]:
    """Claim queued jobs of the given kinds that are due."""
    return claim_due(
        session,
        BackgroundJob,
        due_column=BackgroundJob.due_at,
        now=now,
        limit=limit,
        extra=(BackgroundJob.state == "queued", BackgroundJob.kind.in_(list(kinds))),
    )


def finish_job(job: BackgroundJob, *, now: datetime) -> None:
    job.state, job.finished_at, job.attempts = "done", now, job.attempts + 1


def fail_job(job: BackgroundJob, *, error: str, now: datetime, permanent: bool = False) -> None:
    """Retry with backoff while attempts remain; then mark the job dead with its error. A
    ``permanent`` failure (retrying cannot help) is dead at once."""
    job.attempts += 1
    job.last_error = error[:4000]
    if permanent or job.attempts >= job.max_attempts:
        job.state, job.finished_at = "dead", now
    else:
        job.due_at = now + retry_delay(
            job.attempts, base=timedelta(seconds=30), cap=timedelta(hours=1)
        )


def worker_identity() -> tuple[str, str, int]:
    """``(worker_id, hostname, pid)`` of this process."""
    hostname = socket.gethostname()
    pid = os.getpid()
    return f"{hostname}:{pid}", hostname, pid


def beat(
    session: Session, *, worker_id: str, started_at: datetime, processed: int, now: datetime
) -> None:
    """Record that this worker is alive and how much it has done."""
    hostname, _, pid_text = worker_id.rpartition(":")
    inserted = insert_ignoring_conflicts(
        session,
        WorkerHeartbeat,
        {
            "worker_id": worker_id,
            "hostname": hostname,
            "pid": int(pid_text) if pid_text.isdigit() else 0,
            "started_at": started_at,
            "last_seen_at": now,
            "processed": processed,
        },
    )
    if not inserted:
        session.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.worker_id == worker_id)
            .values(last_seen_at=now, processed=processed)
        )


def live_workers(
    session: Session, *, now: datetime, within: timedelta
) -> Sequence[WorkerHeartbeat]:
    return session.scalars(
        select(WorkerHeartbeat)
        .where(WorkerHeartbeat.last_seen_at >= now - within)
        .order_by(WorkerHeartbeat.worker_id)
    ).all()
