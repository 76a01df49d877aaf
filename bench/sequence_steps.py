"""Sequence steps (#4): N enrolled contacts, each with a due send step — render the template with
the contact's fields, decide it by the full sending policy, write it to the outbox with its
step run and move the enrollment on — side by side with the same steps taken one per
transaction (what a job per step does, without the queue's own overhead).

    python -m bench.sequence_steps [--contacts 1000000] [--baseline 3000] [--workers 1]
                                   [--database-url postgresql://…] [--procrastinate 2000]

The audience is the broadcast benchmark's (opt-outs, opt-ins, a promotion three days ago for
one in twenty, four time zones). ``--workers 2`` runs the steps in two processes (PostgreSQL:
they claim with SKIP LOCKED). Target: ≥ 50,000 steps/s on SQLite.

``--procrastinate K`` (PostgreSQL) adds the way a team would build it without Tidings: one
task per step on procrastinate, a PostgreSQL task queue, in the same database. Its K tasks
are deferred before the clock starts (in favour of the queue); each runs the very same step
code for its one enrollment in its own transaction. Its worker runs ``--workers`` tasks at a
time. Target: Tidings ≥ 50× its throughput. Needs ``pip install procrastinate``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from bench.broadcast_planning import TEMPLATE, fill
from bench.common import (
    PINNED,
    Figures,
    fresh_installation,
    machine,
    make_workspace,
    measure_processes,
)
from tidings.bootstrap import Tidings, build, tune_garbage_collector
from tidings.channels import service as channels
from tidings.contacts.orm import Contact
from tidings.db.base import among, table_of
from tidings.kernel.clock import VirtualClock
from tidings.sequences import service as sequences
from tidings.sequences.jobs import SequenceRunner, advance_enrollments, claim_due
from tidings.sequences.orm import Enrollment, StepRunRecord
from tidings.settings import load_settings
from tidings.workspaces import service as workspaces

BATCH = 500  # the worker's default batch
DEFINITION = {
    "name": "Bench",
    "steps": [
        {
            "id": "offer",
            "type": "send_whatsapp",
            "purpose": "marketing",
            "template": {
                "name": TEMPLATE["name"],
                "language": "zh_TW",
                "components": TEMPLATE["components"],
            },
            "next": "later",
        },
        {"id": "later", "type": "wait", "duration": "2d"},
    ],
    "settings": {"window": {"start": "00:00", "end": "23:59"}},
}


def enroll(inst: Tidings, workspace_id: int, contact_ids: list[int]) -> None:
    """Enrollments due now at the send step, written directly (as triggers would have)."""
    with inst.db.transaction() as session:
        workspace = workspaces.get_workspace(session, workspace_id)
        assert workspace is not None
        sequence = sequences.find_sequence(session, workspace, "Bench")
        assert sequence is not None
        version_id = sequences.get_version(session, sequence).id
        sequence_id = sequence.id
    now = inst.clock.now()
    for start in range(0, len(contact_ids), 50_000):
        with inst.db.transaction() as session:
            session.execute(
                insert(table_of(Enrollment)),
                [
                    {
                        "workspace_id": workspace_id,
                        "sequence_id": sequence_id,
                        "version_id": version_id,
                        "contact_id": contact_id,
                        "status": "active",
                        "step_id": "offer",
                        "arrived_at": now,
                        "due_at": now,
                        "visit": 0,
                        "reached_goals": "",
                        "source": "bench",
                        "enrolled_at": now,
                        "updated_at": now,
                    }
                    for contact_id in contact_ids[start : start + 50_000]
                ],
            )


def analyze(inst: Tidings) -> None:
    """PostgreSQL: fresh statistics after a bulk load, as autovacuum would soon have made
    (without them the planner reads every enrollment to find the due ones)."""
    if inst.db.engine.dialect.name == "postgresql":
        with inst.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")


def run_steps(database_url: str, limit: int) -> None:
    """One worker process: claim and advance due enrollments until none is left."""
    tune_garbage_collector()
    inst = build(load_settings(database_url=database_url, demo=True))
    inst.clock = VirtualClock(PINNED)
    runner = SequenceRunner()
    while True:
        with inst.db.transaction(background=True) as session:
            if runner.run_batch(session, now=inst.clock.now(), limit=limit) == 0:
                break
    inst.close()


def prepare(inst: Tidings, workspace_id: int, contacts: int) -> None:
    """The workspace's policy opened up for volume, a number, the Bench sequence (active) and
    ``contacts`` contacts of the broadcast benchmark's audience."""
    with inst.db.transaction() as session:
        fresh = workspaces.get_workspace(session, workspace_id)
        assert fresh is not None
        workspaces.update_workspace(
            session,
            workspace=fresh,
            changes={
                "policy": {
                    "daily_quota_per_number": 10_000_000,
                    "warmup_first_day_quota": None,
                    "quiet_hours_start": "00:00",
                    "quiet_hours_end": "00:00",
                }
            },
            now=inst.clock.now(),
        )
        number = channels.add_number(
            session,
            workspace=fresh,
            data={
                "name": "bench",
                "phone_number_id": "100000000000001",
                "business_account_id": "200000000000001",
                "display_phone_number": "+85230001234",
                "access_token": "bench-token",
                "app_secret": "bench-app-secret",
                "verify_token": "bench-verify-token",
            },
            box=inst.secret_box,
            now=inst.clock.now(),
        )
        number_id = number.id
        sequences.create_sequence(
            session,
            workspace=fresh,
            data=DEFINITION,
            status="active",
            created_by="bench",
            now=inst.clock.now(),
        )
    fill(inst, workspace_id, number_id, contacts)


def procrastinate_run(database_url: str, enrollment_ids: list[int], concurrency: int) -> float:
    """One procrastinate task per step, the tasks deferred beforehand; the seconds its
    worker takes to run them all."""
    import procrastinate  # the baseline's own dependency, not the product's

    inst = build(load_settings(database_url=database_url, demo=True))
    inst.clock = VirtualClock(PINNED)
    conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

    @app.task(name="sequence_step")
    def sequence_step(enrollment_id: int) -> None:
        with inst.db.transaction(background=True) as session:
            now = inst.clock.now()
            claimed = claim_due(session, now=now, limit=1, enrollment_ids=[enrollment_id])
            advance_enrollments(session, claimed, now=now)

    with app.open():
        app.schema_manager.apply_schema()
        for start in range(0, len(enrollment_ids), 10_000):
            chunk = enrollment_ids[start : start + 10_000]
            sequence_step.batch_defer(*({"enrollment_id": e} for e in chunk))
        started = time.perf_counter()
        app.run_worker(wait=False, concurrency=concurrency, install_signal_handlers=False)
        took = time.perf_counter() - started
    inst.close()
    return took


def timed_run(inst: Tidings, workers: int, limit: int, steps: int) -> Figures:
    """The due steps run by ``workers`` processes (one: this process), timed with the CPU of
    this process, its worker processes and the database server."""
    url = inst.settings.database_url

    def work() -> None:
        if workers == 1:
            run_steps(url, limit)
            return
        spawn = multiprocessing.get_context("spawn")
        processes = [spawn.Process(target=run_steps, args=(url, limit)) for _ in range(workers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
            assert process.exitcode == 0

    return measure_processes(inst.db.engine, work, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=3_000, help="steps, one per transaction")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--procrastinate", type=int, default=0, help="steps, one task each")
    args = parser.parse_args()
    tune_garbage_collector()
    os.environ.setdefault("TIDINGS_SECRET_KEY", "bench-secret-0123456789")
    inst = fresh_installation(args.database_url or None)
    inst.clock = VirtualClock(PINNED)  # every step due at the same weekday hour, each run
    url = inst.settings.database_url
    if args.procrastinate and inst.db.engine.dialect.name != "postgresql":
        parser.error("--procrastinate needs --database-url postgresql://…")
    workspace, _ = make_workspace(inst)
    total = args.contacts + args.baseline + args.procrastinate
    prepare(inst, workspace.id, total)
    with inst.db.reading() as session:
        every = list(session.scalars(select(Contact.id).order_by(Contact.id)))
    ours_ids = every[: args.contacts]
    baseline_ids = every[args.contacts : args.contacts + args.baseline]
    queued_ids = every[args.contacts + args.baseline :]

    # The straightforward way first, on contacts of its own: one step per transaction.
    enroll(inst, workspace.id, baseline_ids)
    analyze(inst)
    baseline = timed_run(inst, 1, 1, len(baseline_ids))
    queued = 0.0
    if queued_ids:
        enroll(inst, workspace.id, queued_ids)
        analyze(inst)
        with inst.db.reading() as session:
            enrollment_ids = list(
                session.scalars(
                    select(Enrollment.id)
                    .where(among(session, Enrollment.contact_id, queued_ids))
                    .order_by(Enrollment.id)
                )
            )
        queued = procrastinate_run(url, enrollment_ids, args.workers)
    enroll(inst, workspace.id, ours_ids)
    analyze(inst)
    print(f"  {len(ours_ids):,} enrollments due; running", file=sys.stderr)
    ours = timed_run(inst, args.workers, BATCH, len(ours_ids))

    with inst.db.reading() as session:
        outcomes = dict(
            session.execute(
                select(StepRunRecord.detail, func.count()).group_by(StepRunRecord.detail)
            ).all()
        )
        ran = session.scalar(select(func.count()).select_from(StepRunRecord))
        left = session.scalar(
            select(func.count()).where(
                Enrollment.status == "active", Enrollment.due_at <= inst.clock.now()
            )
        )
    assert left == 0, f"{left} enrollments still due"
    assert (ran or 0) >= total, f"only {ran} steps ran"
    table = Table(
        title=f"Sequence steps · {inst.db.engine.dialect.name} · {args.workers} worker(s) · "
        f"{args.contacts:,} contacts · clock pinned at {PINNED:%Y-%m-%d %H:%M} UTC · {machine()}"
    )
    for column in ("way", "steps", "seconds", "steps/s", "CPU µs/step", "server µs/step",
                   "× baseline"):  # fmt: skip
        table.add_column(column, justify="right")

    def row(way: str, run: Figures) -> None:
        table.add_row(
            way,
            f"{run.items:,}",
            f"{run.wall:.1f}",
            f"{run.rate:,.0f}",
            f"{run.process_cpu / run.items * 1e6:,.1f}",
            f"{run.server_cpu / run.items * 1e6:,.1f}",
            f"{run.rate / baseline.rate:.1f}×",
        )

    row("Tidings runner (batches of 500)", ours)
    row("one step per transaction", baseline)
    if queued_ids:
        queue_rate = len(queued_ids) / queued
        table.add_row(f"procrastinate, one task per step ({args.workers} at a time)",
                      f"{len(queued_ids):,}", f"{queued:.1f}", f"{queue_rate:,.0f}", "", "",
                      f"{queue_rate / baseline.rate:.1f}×")  # fmt: skip
        table.caption = f"Tidings runner ÷ procrastinate: {ours.rate / queue_rate:.1f}×"
    Console(width=200).print(table)
    Console().print(f"step outcomes: {dict(sorted(outcomes.items(), key=lambda kv: -kv[1])[:6])}")
    inst.close()


if __name__ == "__main__":
    main()
