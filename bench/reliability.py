"""Reliability: N sends through two `tidings worker` processes sharing one number, with faults
injected by the simulator (3% transient: 131000 and 130429; 1% refused for good: 131026), one
worker killed with SIGKILL mid-run and started again (#22).

    python -m bench.reliability [--messages 10000] [--database-url postgresql://…]

Printed: what became of every message (delivered to the provider, failed for a permanent
reason, uncertain), duplicates on the simulator's ledger, rate-limit answers and the busiest
second the simulator saw (its limit is 80 a second), the time from the kill until the dead
worker's claims were taken back, and wall and CPU time beside the floor of the same run: the
sends at the paced rate (80/s less the 10% headroom), the least time any design obeying the
number's limit needs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select, text, update

from bench.common import fresh_installation, machine, make_workspace, simulated_number
from bench.dispatch import fill, free_port
from tidings.bootstrap import Tidings
from tidings.messaging.orm import Message
from tidings.simulator.server import SimulatorConfig

CONFIG = SimulatorConfig()
LIMIT = 80
HEADROOM = 0.1


def start_simulator(transient: float, refused: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tidings", "simulator", "--port", str(port)),
            *("--transient-error-rate", str(transient), "--refusal-rate", str(refused)),
            "--no-window",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/health")
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the simulator did not start")


def start_worker(inst: Tidings, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TIDINGS_DATABASE_URL": inst.settings.database_url,
        "TIDINGS_DATA_DIR": str(data_dir),
        "TIDINGS_SECRET_KEY": inst.settings.secret_key.get_secret_value(),
        "TIDINGS_EGRESS_ALLOW": "127.0.0.0/8",
        "TIDINGS_LOG_LEVEL": "ERROR",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tidings", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a live process (Linux), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def statuses(inst: Tidings) -> Counter[str]:
    with inst.db.reading() as session:
        rows = session.execute(select(Message.status, func.count()).group_by(Message.status))
        return Counter({status: int(count) for status, count in rows})


def counts_first_attempts(inst: Tidings) -> int:
    """Messages never tried yet: once none is left, what remains is retries."""
    with inst.db.reading() as session:
        return int(
            session.scalar(
                select(func.count()).where(Message.status == "queued", Message.attempts == 0)
            )
            or 0
        )


def claimed_by(inst: Tidings, worker: str) -> int:
    with inst.db.reading() as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    Message.status == "sending", Message.claimed_by == worker
                )
            )
            or 0
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--transient", type=float, default=0.03)
    parser.add_argument("--refused", type=float, default=0.01)
    parser.add_argument("--kill-at", type=float, default=0.3, help="share sent when killed")
    args = parser.parse_args()
    os.environ.setdefault("TIDINGS_SECRET_KEY", "bench-secret-0123456789")
    simulator, url = start_simulator(args.transient, args.refused)
    inst = fresh_installation(args.database_url or None)
    data = Path(inst.settings.data_dir)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        workspace, _ = make_workspace(inst)
        number_id = simulated_number(
            inst,
            workspace.id,
            url,
            {
                "daily_quota_per_number": 10_000_000,
                "warmup_first_day_quota": None,
                "messaging_tier_limit": None,
                "quiet_hours_start": "00:00",
                "quiet_hours_end": "00:00",
            },
        )
        fill(inst, workspace.id, number_id, args.messages)
        with inst.db.transaction() as session:
            # Messages that may not be sent twice on a guess: an uncertain one waits for a
            # person, so every duplicate on the ledger would be the pipeline's own.
            session.execute(update(Message).values(resend_if_uncertain=False))

        started = time.perf_counter()
        workers = [start_worker(inst, data / f"w{n}") for n in range(2)]
        victim = workers[0]
        victim_id = f"{os.uname().nodename}:{victim.pid}"
        killed_at = recovered_at = None
        first_round: float | None = None
        cpu_before_kill = 0.0
        while True:
            counts = statuses(inst)
            done = args.messages - counts["queued"] - counts["sending"] - counts["deferred"]
            if first_round is None and not counts_first_attempts(inst):
                first_round = time.perf_counter() - started
            if (
                killed_at is None
                and done >= args.messages * args.kill_at
                and claimed_by(inst, victim_id)  # killed while it holds sends
            ):
                cpu_before_kill = cpu_seconds(victim.pid)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                killed_at = time.perf_counter()
                stranded = claimed_by(inst, victim_id)
                workers[0] = start_worker(inst, data / "w2")
                print(f"\n  killed {victim_id} holding {stranded} sends", file=sys.stderr)
            if killed_at is not None and recovered_at is None and not claimed_by(inst, victim_id):
                recovered_at = time.perf_counter()
            if done >= args.messages:
                break
            print(f"\r  {done:,} of {args.messages:,} settled", end="", file=sys.stderr)
            time.sleep(0.25)
        wall = time.perf_counter() - started
        cpu = cpu_before_kill + sum(cpu_seconds(w.pid) for w in workers)
        print(file=sys.stderr)
        ledger = httpx.get(f"{url}/_simulator/ledger", timeout=60).json()
        entries = ledger["entries"] if isinstance(ledger, dict) else ledger
        counts = statuses(inst)
        dialect = inst.db.engine.dialect.name
        with inst.db.reading() as session:
            failed = Counter(
                code
                for (code,) in session.execute(
                    text("SELECT error_code FROM messages WHERE status = 'failed'")
                )
            )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
        simulator.terminate()
        inst.close()

    accepted = Counter(e["to"] for e in entries if e["outcome"] == "accepted")
    rejected = Counter(e["error_code"] for e in entries if e["outcome"] == "rejected")
    per_second = Counter(e["second"] for e in entries if e["outcome"] != "read_receipt")
    floor = args.messages / (LIMIT * (1 - HEADROOM))
    table = Table(title=f"Reliability, {args.messages:,} sends — {machine()}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("database", dialect),
        ("accepted by the provider (unique recipients)", f"{len(accepted):,}"),
        ("failed, permanent codes only", f"{sum(failed.values()):,} {dict(failed)}"),
        ("uncertain (killed on the wire, for a person)", f"{counts['uncertain']:,}"),
        ("duplicates on the ledger", f"{sum(n - 1 for n in accepted.values()):,}"),
        ("refusals by code", str(dict(rejected))),
        ("busiest second at the provider (limit 80)", f"{max(per_second.values()):,}"),
        (
            "kill → dead worker's claims recovered",
            f"{(recovered_at or 0) - (killed_at or 0):.1f} s",
        ),
        ("every message tried once", f"{first_round or 0:.1f} s"),
        ("floor: sends at the paced rate (72/s)", f"{floor:.1f} s"),
        ("tried once / floor", f"{(first_round or 0) / floor:.2f}"),
        ("wall time, retries' backoff included", f"{wall:.1f} s"),
        ("worker CPU per message", f"{cpu / args.messages * 1000:.2f} ms"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


if __name__ == "__main__":
    main()
