"""A behavioural segment over a million contacts (#6, A3): "more than 3 product enquiries in
7 days AND tagged X AND not opted out of WhatsApp marketing", compiled from the condition
language to one SQL query, side by side with DuckDB computing the same answer on the same
data (our near-limit reference: a columnar engine made for exactly this scan).

    python -m bench.segment_query [--contacts 1000000] [--events 20000000] [--database-url …]

Data: events over the last 90 days — messages, link clicks, orders, and product enquiries for
everyone at a low rate, plus a "hot" 2% who enquire often this week; 30% of contacts tagged X,
10% opted out. Targets: ≤ 2 s on PostgreSQL, ≤ 5 s on SQLite. The answer of both engines is
compared: a fast wrong answer does not count.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from rich.console import Console
from rich.table import Table
from sqlalchemy import insert, text

from bench.common import fresh_installation, machine
from tidings.automation.facts import sources_for
from tidings.bootstrap import Tidings, tune_garbage_collector
from tidings.conditions.domain import Condition
from tidings.contacts import service as contacts
from tidings.contacts.orm import Consent, Contact, ContactTag, Tag
from tidings.db.base import table_of
from tidings.workspaces import service as workspaces

CONDITION = TypeAdapter(Condition).validate_python(
    {
        "all": [
            {"event": "product.enquiry", "at_least": 4, "within": "7d"},
            {"has_tag": "X"},
            {"not": {"consent": "whatsapp", "purpose": "marketing", "status": "opted_out"}},
        ]
    }
)
KINDS = ("message.received", "link.clicked", "order.placed", "product.enquiry")
KIND_WEIGHTS = (0.55, 0.2, 0.05, 0.2)
CHUNK = 200_000


def generate(
    inst: Tidings, workspace_id: int, contact_count: int, event_count: int, folder: Path
) -> None:
    """Write the same data to the database and to CSV files for DuckDB."""
    rng = random.Random(20261124)
    now = inst.clock.now()
    table = table_of(Contact)
    contact_ids: list[int] = []
    with inst.db.transaction() as session:
        tag = Tag(workspace_id=workspace_id, name="X", key="x", created_at=now)
        session.add(tag)
        session.flush()
        tag_id = tag.id
    for start in range(0, contact_count, CHUNK):
        rows = [
            {
                "workspace_id": workspace_id,
                "name": f"Contact {n}",
                "lifecycle_stage": "lead",
                "score": 0,
                "custom_fields": {},
                "do_not_contact": False,
                "activity_score": 0,
                "churn_risk": False,
                "created_at": now,
                "updated_at": now,
            }
            for n in range(start, min(start + CHUNK, contact_count))
        ]
        with inst.db.transaction() as session:
            ids = session.scalars(
                insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
            ).all()
        contact_ids.extend(ids)
    tagged = [c for c in contact_ids if rng.random() < 0.3]
    opted_out = [c for c in contact_ids if rng.random() < 0.1]
    hot = [c for c in contact_ids if rng.random() < 0.02]
    with inst.db.transaction() as session:
        for start in range(0, len(tagged), CHUNK):
            session.execute(
                insert(table_of(ContactTag)),
                [
                    {"contact_id": c, "tag_id": tag_id, "created_at": now}
                    for c in tagged[start : start + CHUNK]
                ],
            )
        for start in range(0, len(opted_out), CHUNK):
            session.execute(
                insert(table_of(Consent)),
                [
                    {
                        "workspace_id": workspace_id,
                        "contact_id": c,
                        "channel": "whatsapp",
                        "purpose": "marketing",
                        "status": "opted_out",
                        "source": "bench",
                        "recorded_at": now,
                    }
                    for c in opted_out[start : start + CHUNK]
                ],
            )
    _csv(folder / "tags.csv", ("contact_id",), ((c,) for c in tagged))
    _csv(folder / "consents.csv", ("contact_id",), ((c,) for c in opted_out))
    # Events: the hot 2% enquire 2-8 times this week; everyone else draws from the mix.
    with (folder / "events.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("contact_id", "event_type", "occurred_at"))
        written = 0
        hot_rows = [
            (c, "product.enquiry", now - timedelta(seconds=rng.randrange(7 * 86_400)))
            for c in hot
            for _ in range(rng.randrange(2, 9))
        ]
        pending = iter(hot_rows)
        while written < event_count:
            size = min(CHUNK, event_count - written)
            batch: list[tuple[int, str, Any]] = []
            for _ in range(size):
                extra = next(pending, None)
                if extra is not None:
                    batch.append(extra)
                    continue
                kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
                batch.append(
                    (
                        contact_ids[rng.randrange(len(contact_ids))],
                        kind,
                        now - timedelta(seconds=rng.randrange(90 * 86_400)),
                    )
                )
            _insert_events(inst, workspace_id, batch)
            writer.writerows((c, kind, at.isoformat()) for c, kind, at in batch)
            written += size
            print(f"  {written:,} events", end="\r", file=sys.stderr)
    print(file=sys.stderr)


def _insert_events(inst: Tidings, workspace_id: int, batch: list[tuple[int, str, Any]]) -> None:
    """Events straight through the driver: SQLite's ``executemany`` with the column's own
    text form of times, PostgreSQL's ``COPY`` — the ORM's per-row work would make generating
    20 million rows take an hour, and generating is not what is measured."""
    raw: Any = inst.db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if inst.db.engine.dialect.name == "postgresql":
            with cursor.copy(
                "COPY contact_events (workspace_id, contact_id, event_type, occurred_at,"
                " received_at, source, properties, depth) FROM STDIN"
            ) as copy:
                for c, kind, at in batch:
                    copy.write_row((workspace_id, c, kind, at, at, "bench", "{}", 0))
        else:
            cursor.executemany(
                "INSERT INTO contact_events (workspace_id, contact_id, event_type, occurred_at,"
                " received_at, source, properties, depth) VALUES (?, ?, ?, ?, ?, 'bench', '{}', 0)",
                [
                    (workspace_id, c, kind, text, text)
                    for c, kind, at in batch
                    for text in (
                        at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds"),
                    )
                ],
            )
        raw.commit()
    finally:
        raw.close()


def _csv(path: Path, header: tuple[str, ...], rows: Any) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def ours(inst: Tidings, workspace_id: int, runs: int) -> tuple[list[float], set[int]]:
    times, found = [], set()
    for _ in range(runs):
        with inst.db.reading() as session:
            started = time.perf_counter()
            query = contacts.matching_ids_query(
                session,
                workspace_id,
                CONDITION,
                as_of=inst.clock.now(),
                sources=sources_for(workspace_id),
            )
            found = set(session.scalars(query))
            times.append(time.perf_counter() - started)
    return times, found


def duckdb_answer(folder: Path, now: Any, runs: int) -> tuple[float, list[float], set[int]]:
    import duckdb

    connection = duckdb.connect()
    started = time.perf_counter()
    connection.execute(
        f"CREATE TABLE events AS SELECT * FROM read_csv('{folder / 'events.csv'}', "
        "columns={'contact_id': 'BIGINT', 'event_type': 'VARCHAR', 'occurred_at': 'TIMESTAMPTZ'},"
        " header=true)"
    )
    connection.execute(f"CREATE TABLE tags AS SELECT * FROM read_csv('{folder / 'tags.csv'}')")
    connection.execute(
        f"CREATE TABLE consents AS SELECT * FROM read_csv('{folder / 'consents.csv'}')"
    )
    loaded = time.perf_counter() - started
    query = """
        SELECT contact_id FROM events
        WHERE event_type = 'product.enquiry' AND occurred_at > $since AND occurred_at <= $now
        GROUP BY contact_id HAVING count(*) >= 4
        INTERSECT SELECT contact_id FROM tags
        EXCEPT SELECT contact_id FROM consents
    """
    times, found = [], set()
    for _ in range(runs):
        started = time.perf_counter()
        rows = connection.execute(query, {"since": now - timedelta(days=7), "now": now}).fetchall()
        times.append(time.perf_counter() - started)
        found = {int(r[0]) for r in rows}
    return loaded, times, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("TIDINGS_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    tune_garbage_collector()
    console = Console()
    inst = fresh_installation(args.database_url)
    with inst.db.transaction() as session:
        workspace = workspaces.create_workspace(
            session,
            slug="bench",
            settings=workspaces.WorkspaceSettings("Bench", "TH", "Asia/Bangkok", "th-TH"),
            now=inst.clock.now(),
        )
        workspace_id = workspace.id
    folder = Path(tempfile.mkdtemp(prefix="tidings-segment-"))
    started = time.perf_counter()
    generate(inst, workspace_id, args.contacts, args.events, folder)
    console.print(f"generated in {time.perf_counter() - started:.0f} s")
    if inst.db.engine.dialect.name == "postgresql":
        with inst.db.engine.connect() as connection:
            connection.execute(text("ANALYZE"))
    else:
        with inst.db.engine.connect() as connection:
            connection.execute(text("ANALYZE"))
    times, found = ours(inst, workspace_id, args.runs)
    loaded, duck_times, duck_found = duckdb_answer(folder, inst.clock.now(), args.runs)
    same = found == duck_found
    table = Table(title=f"Segment over {args.contacts:,} contacts, {args.events:,} events")
    table.add_column("engine")
    table.add_column("median s", justify="right")
    table.add_column("best s", justify="right")
    table.add_column("members", justify="right")
    dialect = inst.db.engine.dialect.name
    table.add_row(
        f"Tidings on {dialect}",
        f"{statistics.median(times):.3f}",
        f"{min(times):.3f}",
        f"{len(found):,}",
    )
    table.add_row(
        "DuckDB (in memory)",
        f"{statistics.median(duck_times):.3f}",
        f"{min(duck_times):.3f}",
        f"{len(duck_found):,}",
    )
    console.print(table)
    ratio = statistics.median(times) / statistics.median(duck_times)
    console.print(f"DuckDB load from CSV: {loaded:.1f} s (not counted); ours/DuckDB: {ratio:.1f}×")
    console.print(f"same answer: {same}")
    console.print(machine())
    inst.close()
    if not same:
        raise SystemExit("the two engines disagree")


if __name__ == "__main__":
    main()
