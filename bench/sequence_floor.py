"""How fast could sequence steps go on SQLite if Python cost nothing? (#4)

    python -m bench.sequence_floor [--contacts 20000]

Sets up the sequence benchmark's audience and enrollments, copies the database file, lets
``SequenceRunner`` advance every enrollment while recording each statement it sends, then
replays exactly those statements with their parameters on the copy through bare ``sqlite3``
(the same pragmas, the same transactions). The replay is the floor the database itself sets
for this schema and these rows on this machine: no Python work for rendering, the policy, the
interpreter or SQLAlchemy. Printed: the runner's rate, the replay's rate (all statements, and
the writes alone) and the time per step of each kind of statement.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import event, select

from bench.common import fresh_installation, machine, make_workspace
from bench.sequence_steps import BATCH, enroll, prepare
from tidings.bootstrap import build, tune_garbage_collector
from tidings.contacts.orm import Contact
from tidings.sequences.jobs import SequenceRunner
from tidings.settings import load_settings

PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "foreign_keys=ON",
    "cache_size=-65536",
    "temp_store=MEMORY",
)
Recorded = tuple[str, Any, bool]  # statement, parameters, executemany
COMMIT = "COMMIT"


def kind_of(statement: str) -> str:
    """ "INSERT messages", "UPDATE sequence_enrollments", "SELECT" …"""
    words = statement.split()
    head = words[0].upper()
    if head == "INSERT":
        return f"INSERT {words[words.index('INTO') + 1]}"
    if head == "UPDATE":
        return f"UPDATE {words[1]}"
    return head


def record(url: str) -> tuple[list[Recorded], float]:
    """Run the steps, keeping every statement; returns them and the runner's seconds."""
    inst = build(load_settings(database_url=url, demo=True))
    kept: list[Recorded] = []

    @event.listens_for(inst.db.engine, "before_cursor_execute")
    def _statement(_c: Any, _k: Any, statement: str, parameters: Any, _x: Any, many: bool) -> None:
        if statement.split()[0].upper() != "BEGIN":
            kept.append((statement, parameters, many))

    @event.listens_for(inst.db.engine, "commit")
    def _commit(_connection: Any) -> None:
        kept.append((COMMIT, None, False))

    runner = SequenceRunner()
    started = time.perf_counter()
    while True:
        with inst.db.transaction(background=True) as session:
            if runner.run_batch(session, now=inst.clock.now(), limit=BATCH) == 0:
                break
    took = time.perf_counter() - started
    inst.close()
    return kept, took


def replay(
    path: Path, kept: list[Recorded], *, writes_only: bool
) -> tuple[float, dict[str, float]]:
    """The recorded statements on a fresh copy; seconds, and seconds by kind of statement."""
    shutil.copy(path.with_suffix(".before"), path)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    database = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        database.execute(f"PRAGMA {pragma}")
    spent: dict[str, float] = defaultdict(float)
    begun = False
    started = time.perf_counter()
    for statement, parameters, many in kept:
        moment = time.perf_counter()
        if statement == COMMIT:
            if begun:
                database.execute("COMMIT")
                begun = False
                spent[COMMIT] += time.perf_counter() - moment
            continue
        kind = kind_of(statement)
        if writes_only and kind == "SELECT":
            continue
        if not begun:
            database.execute("BEGIN IMMEDIATE")
            begun = True
        if many:
            database.executemany(statement, parameters)
        else:
            database.execute(statement, parameters or ()).fetchall()
        spent[kind] += time.perf_counter() - moment
    if begun:
        database.execute("COMMIT")
    took = time.perf_counter() - started
    database.close()
    return took, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=20_000)
    args = parser.parse_args()
    tune_garbage_collector()
    os.environ.setdefault("TIDINGS_SECRET_KEY", "bench-secret-0123456789")
    inst = fresh_installation(None)
    url = inst.settings.database_url
    workspace, _ = make_workspace(inst)
    prepare(inst, workspace.id, args.contacts)
    with inst.db.reading() as session:
        every = list(session.scalars(select(Contact.id).order_by(Contact.id)))
    enroll(inst, workspace.id, every)
    inst.close()
    path = Path(url.removeprefix("sqlite:///"))
    database = sqlite3.connect(path)
    database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()  # (``with`` would only commit: an open handle breaks the copies below)
    shutil.copy(path, path.with_suffix(".before"))

    kept, runner = record(url)
    writes, by_kind = replay(path, kept, writes_only=True)
    everything, _ = replay(path, kept, writes_only=False)
    steps = args.contacts
    table = Table(title=f"Sequence steps: the database's floor · SQLite · {steps:,} · {machine()}")
    for column in ("what", "seconds", "steps/s", "µs per step"):
        table.add_column(column, justify="right")
    for name, seconds in (
        ("SequenceRunner (all of it)", runner),
        ("its SQL alone, replayed", everything),
        ("its writes alone, replayed", writes),
    ):
        table.add_row(
            name, f"{seconds:.2f}", f"{steps / seconds:,.0f}", f"{seconds / steps * 1e6:.1f}"
        )
    for kind, seconds in sorted(by_kind.items(), key=lambda item: -item[1]):
        table.add_row(f"  {kind}", f"{seconds:.2f}", "", f"{seconds / steps * 1e6:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
