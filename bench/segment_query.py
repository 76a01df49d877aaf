"""A behavioural segment over a million contacts (#6, A3): "more than 3 product enquiries in
7 days AND tagged X AND not opted out of WhatsApp marketing", compiled from the condition
language to one SQL query, side by side with DuckDB computing the same answer on the same
data (our near-limit reference: a columnar engine made for exactly this scan).

    python -m bench.segment_query [--contacts 1000000] [--events 20000000] [--database-url …]

The data is generated inside each engine from the same integer formulas (a recursive CTE on
SQLite, ``generate_series`` on PostgreSQL, ``range`` on DuckDB), so all three hold identical
rows without pushing twenty million of them through Python:

- event ``i`` belongs to contact ``(i · 2654435761) mod N``, happened ``(i · 40503) mod 90 days``
  seconds ago, and is a message (55%), a link click (20%), an order (5%) or a product enquiry
  (20%) by ``i mod 20``;
- one contact in 50 is "hot": five more enquiries spread over this week (``HOT``);
- 30% are tagged X (``c · 7 mod 10 < 3``), 10% opted out (``c · 13 mod 10 = 0``).

Indexes are dropped while loading and built afterwards, as a bulk load would. Targets: ≤ 2 s
on PostgreSQL, ≤ 5 s on SQLite. The two engines' answers are compared: a fast wrong answer
does not count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

from pydantic import TypeAdapter
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from bench.common import fresh_installation, machine
from tidings.automation.facts import sources_for
from tidings.bootstrap import Tidings, tune_garbage_collector
from tidings.conditions.domain import Condition
from tidings.contacts import service as contacts
from tidings.contacts.orm import ContactEvent
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
# The hot contact of extra enquiry i: one in 50, spread so that tags and consents vary.
HOT = "({i} % {hot}) * 50 + ({i} % {hot}) % 47"
NINETY_DAYS = 90 * 86_400
WEEK = 7 * 86_400
KIND = (
    "CASE WHEN {i} % 20 < 11 THEN 'message.received' WHEN {i} % 20 < 15 THEN 'link.clicked' "
    "WHEN {i} % 20 = 15 THEN 'order.placed' ELSE 'product.enquiry' END"
)


def _series(dialect: str, count: int, name: str = "i") -> str:
    """Rows ``0 … count-1`` in column ``name``."""
    if dialect == "postgresql":
        return f"(SELECT generate_series(0::bigint, {count - 1}) AS {name}) AS numbers"
    return (
        f"(WITH RECURSIVE numbers({name}) AS (SELECT 0 UNION ALL SELECT {name} + 1 FROM "
        f"numbers WHERE {name} < {count - 1}) SELECT {name} FROM numbers) AS numbers"
    )


def _moment(dialect: str, now: datetime, seconds: str) -> str:
    """``now`` minus ``seconds`` as the column stores it."""
    if dialect == "postgresql":
        return f"(TIMESTAMPTZ '{now.isoformat()}' - ({seconds}) * INTERVAL '1 second')"
    base = now.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
    return (
        f"(strftime('%Y-%m-%d %H:%M:%S', '{base}', '-' || ({seconds}) || ' seconds') || '.000000')"
    )


def generate(
    inst: Tidings, workspace_id: int, contact_count: int, event_count: int, now: datetime
) -> int:
    """Load the data as of ``now``; returns the first contact id."""
    engine = inst.db.engine
    dialect = engine.dialect.name
    stamp = _moment(dialect, now, "0")
    indexes = list(table_of(ContactEvent).indexes)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO contacts (workspace_id, name, lifecycle_stage, score, custom_fields,"
                " do_not_contact, activity_score, churn_risk, created_at, updated_at) "
                f"SELECT {workspace_id}, 'Contact ' || i, 'lead', 0, '{{}}', false, 0, false, "
                f"{stamp}, {stamp} FROM {_series(dialect, contact_count)}"
            )
        )
        first = int(connection.execute(text("SELECT min(id) FROM contacts")).scalar_one())
        connection.execute(
            text(
                "INSERT INTO tags (workspace_id, name, key, created_at) "
                f"VALUES ({workspace_id}, 'X', 'x', {stamp})"
            )
        )
        tag_id = int(connection.execute(text("SELECT max(id) FROM tags")).scalar_one())
        connection.execute(
            text(
                "INSERT INTO contact_tags (contact_id, tag_id, created_at) "
                f"SELECT id, {tag_id}, {stamp} FROM contacts WHERE (id * 7) % 10 < 3"
            )
        )
        connection.execute(
            text(
                "INSERT INTO consents (workspace_id, contact_id, channel, purpose, status, source,"
                f" recorded_at) SELECT {workspace_id}, id, 'whatsapp', 'marketing', 'opted_out',"
                f" 'bench', {stamp} FROM contacts WHERE (id * 13) % 10 = 0"
            )
        )
        for index in indexes:
            index.drop(connection)
        columns = (
            "workspace_id, contact_id, event_type, occurred_at, received_at, source, properties,"
            " depth"
        )
        everyday = _moment(dialect, now, f"(i * 40503) % {NINETY_DAYS}")
        connection.execute(
            text(
                f"INSERT INTO contact_events ({columns}) SELECT {workspace_id}, "
                f"{first} + (i * 2654435761) % {contact_count}, {KIND.format(i='i')}, "
                f"{everyday}, {everyday}, 'bench', '{{}}', 0 FROM {_series(dialect, event_count)}"
            )
        )
        hot = contact_count // 50
        this_week = _moment(dialect, now, f"(i * 7919) % {WEEK}")
        connection.execute(
            text(
                f"INSERT INTO contact_events ({columns}) SELECT {workspace_id}, "
                f"{first} + ({HOT.format(i='i', hot=hot)}) % {contact_count}, 'product.enquiry', "
                f"{this_week}, {this_week}, "
                f"'bench', '{{}}', 0 FROM {_series(dialect, hot * 5)}"
            )
        )
        for index in indexes:
            index.create(connection)
        connection.execute(text("ANALYZE"))
    return first


def ours(
    inst: Tidings, workspace_id: int, now: datetime, runs: int
) -> tuple[list[float], set[int]]:
    times, found = [], set()
    for _ in range(runs):
        with inst.db.reading() as session:
            started = time.perf_counter()
            query = contacts.matching_ids_query(
                session,
                workspace_id,
                CONDITION,
                as_of=now,
                sources=sources_for(workspace_id),
            )
            found = set(session.scalars(query))
            times.append(time.perf_counter() - started)
    return times, found


def duckdb_answer(
    first: int, contact_count: int, event_count: int, now: datetime, runs: int
) -> tuple[float, list[float], set[int]]:
    import duckdb

    connection = duckdb.connect()
    moment = "(TIMESTAMPTZ '{now}' - to_seconds({s}))"
    started = time.perf_counter()
    connection.execute(
        "CREATE TABLE events AS SELECT "
        f"{first} + (i * 2654435761) % {contact_count} AS contact_id, "
        f"{KIND.format(i='i')} AS event_type, "
        f"{moment.format(now=now.isoformat(), s=f'(i * 40503) % {NINETY_DAYS}')} AS occurred_at"
        f" FROM range({event_count}) t(i)"
    )
    hot = contact_count // 50
    connection.execute(
        f"INSERT INTO events SELECT {first} + ({HOT.format(i='i', hot=hot)}) % {contact_count},"
        " 'product.enquiry', "
        f"{moment.format(now=now.isoformat(), s=f'(i * 7919) % {WEEK}')} FROM range({hot * 5}) t(i)"
    )
    ids = f"range({first}, {first + contact_count}) t(id)"
    connection.execute(
        f"CREATE TABLE tags AS SELECT id AS contact_id FROM {ids} WHERE (id * 7) % 10 < 3"
    )
    connection.execute(
        f"CREATE TABLE consents AS SELECT id AS contact_id FROM {ids} WHERE (id * 13) % 10 = 0"
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
    now = inst.clock.now().replace(microsecond=0)
    started = time.perf_counter()
    first = generate(inst, workspace_id, args.contacts, args.events, now)
    console.print(f"generated in the database in {time.perf_counter() - started:.0f} s")
    times, found = ours(inst, workspace_id, now, args.runs)
    loaded, duck_times, duck_found = duckdb_answer(
        first, args.contacts, args.events, now, args.runs
    )
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
    console.print(f"DuckDB generation {loaded:.1f} s (not counted); ours/DuckDB: {ratio:.1f}×")
    console.print(f"same answer: {same}")
    console.print(machine())
    inst.close()
    if not same:
        raise SystemExit("the two engines disagree")


if __name__ == "__main__":
    main()
