"""CSV import of 100,000 contacts with 1% bad rows (issue #2, target ≥ 20,000 rows/s on SQLite).

Baseline, side by side: the same rows upserted one by one through the contacts service, one
transaction each, the way a straightforward importer would do it.

    python -m bench.import_contacts [--rows 100000] [--database-url postgresql://…]
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import PINNED, fresh_installation, machine, make_workspace, measure
from tidings.bootstrap import tune_garbage_collector
from tidings.contacts import jobs
from tidings.contacts import service as contacts
from tidings.contacts.csv_format import ContactRow, parse_row, plan_columns
from tidings.kernel.clock import VirtualClock

SURNAMES = ["陳", "林", "黃", "張", "李", "王", "吳", "劉", "蔡", "楊"]
GIVEN = ["怡君", "家豪", "淑芬", "志明", "美玲", "承恩", "雅婷", "冠宇"]
THAI = ["สมชาย", "สุดารัตน์", "วิชัย", "นภา", "ปิยะ", "อรุณี"]
TAGS = ["vip", "new", "price-sensitive", "returning", "wholesale", "ad-lead"]


def write_csv(path: Path, rows: int, *, bad_share: float = 0.01, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["姓名", "手機", "Email", "Tags", "level", "Lists"])
        for n in range(rows):
            thai = n % 5 == 0
            name = rng.choice(THAI) + f" {n}" if thai else rng.choice(SURNAMES) + rng.choice(GIVEN)
            phone = f"+66 8{n:08d}" if thai else f"09{n:08d}"
            if rng.random() < bad_share:
                phone = f"12{n}"
            writer.writerow(
                [
                    name,
                    phone,
                    f"user{n}@shop{n % 97}.com.tw",
                    ";".join(rng.sample(TAGS, rng.randint(0, 2))),
                    rng.choice(["gold", "silver", ""]),
                    "Newsletter" if n % 3 == 0 else "",
                ]
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, default=3_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    tune_garbage_collector()  # as every tidings process does (CLI start-up)
    folder = Path(tempfile.mkdtemp(prefix="tidings-import-"))
    source = folder / "contacts.csv"
    write_csv(source, args.rows)

    inst = fresh_installation(args.database_url or None)
    inst.clock = VirtualClock(PINNED)
    workspace, _ = make_workspace(inst)

    def per_batch(work):  # type: ignore[no-untyped-def]
        with inst.db.transaction() as session:
            return work(session)

    reports = []

    def run() -> None:
        reports.append(
            jobs.import_csv_file(
                source, workspace=workspace, run_batch=per_batch, clock=inst.clock, source="bench"
            )
        )

    first = measure(inst, run, args.rows)
    again = measure(inst, run, args.rows)
    report, rerun = reports

    baseline_rate = run_baseline(args, source, folder)
    console = Console()
    table = Table(title=f"CSV import · {inst.db.engine.dialect.name} · {machine()}")
    columns = ("run", "rows", "created", "rejected", "seconds", "rows/s", "CPU µs/row",
               "server µs/row", "× baseline")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for name, done, timed in (
        ("Tidings batch import", report, first),
        ("same file again (no changes)", rerun, again),
    ):
        table.add_row(
            name,
            f"{done.rows:,}",
            f"{done.created:,}",
            f"{done.failed:,}",
            f"{timed.wall:.2f}",
            f"{done.rows / timed.wall:,.0f}",
            f"{timed.process_cpu / max(done.rows, 1) * 1e6:,.1f}",
            f"{timed.server_cpu / max(done.rows, 1) * 1e6:,.1f}",
            f"{done.rows / timed.wall / baseline_rate:.1f}×",
        )
    table.add_row(
        "baseline: row-by-row upsert", f"{args.baseline_rows:,}", "", "", "",
        f"{baseline_rate:,.0f}", "", "", "1.0×",
    )  # fmt: skip
    console.print(table)
    inst.close()


def run_baseline(args: argparse.Namespace, source: Path, folder: Path) -> float:
    """Rows/s of one service upsert per row, one transaction per row, on a fresh database."""
    inst = fresh_installation(args.database_url or None)
    inst.clock = VirtualClock(PINNED)
    workspace, _ = make_workspace(inst)
    with inst.db.reading() as session:
        specs = contacts.field_specs(session, workspace)
    with source.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        plan = plan_columns(next(reader), explicit={}, specs=specs)
        lines = [next(reader) for _ in range(args.baseline_rows)]
    started = time.perf_counter()
    for line, values in enumerate(lines, start=2):
        row = parse_row(line, values, plan, specs=specs, region=workspace.default_region)
        if not isinstance(row, ContactRow):
            continue
        with inst.db.transaction() as session:
            contacts.upsert_contact(
                session,
                workspace=workspace,
                data={**row.fields, "tags": row.tags},
                match_on=["phone", "email"],
                source="bench",
                now=inst.clock.now(),
            )
    rate = len(lines) / (time.perf_counter() - started)
    inst.close()
    return rate


if __name__ == "__main__":
    main()
