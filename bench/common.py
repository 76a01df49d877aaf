"""Shared set-up of the benchmarks: a fresh database, a workspace, timing and reporting."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from tidings.bootstrap import Tidings, build
from tidings.channels import service as channels
from tidings.contacts import service as contacts
from tidings.contacts.domain import CustomFieldType
from tidings.settings import load_settings
from tidings.simulator.server import SimulatorConfig
from tidings.workspaces import service as workspaces
from tidings.workspaces.orm import Workspace

BENCH_DB = "tidings_bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Every benchmark's clock: a weekday at 11:00 in Taipei (03:00 UTC), inside every default
# window, so that quiet hours never decide a figure by the hour the benchmark ran.
PINNED = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@dataclass
class Figures:
    """One timed run: how many items, wall seconds, CPU seconds of this process and of the
    database server's backends (PostgreSQL; 0 on SQLite, which runs in this process)."""

    items: int
    wall: float
    process_cpu: float
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.items / self.wall

    def line(self, name: str, unit: str = "item") -> str:
        per = max(self.items, 1)
        return (
            f"{name:<34} {self.rate:10,.0f}/s   CPU {self.process_cpu / per * 1e6:7.1f} µs"
            f" + server {self.server_cpu / per * 1e6:6.1f} µs per {unit}"
            f"   ({self.items:,} in {self.wall:.2f} s)"
        )


def backend_cpu(engine: Engine) -> float:
    """CPU seconds of the database server's backends serving the benchmark's database."""
    if engine.dialect.name != "postgresql":
        return 0.0
    with engine.connect() as connection:
        pids = connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        total = 0.0
        for pid in pids:
            stat = Path(f"/proc/{pid}/stat")
            if stat.exists():
                fields = stat.read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return total


def server_cpu(engine: Engine) -> float:
    """CPU seconds of the whole PostgreSQL server on this host: its live processes and those
    that have exited (the postmaster's reaped children) — for work whose connections close
    before it is timed, such as worker processes (0 on SQLite). Includes the WAL writer and
    the checkpointer, which the work keeps busy; in a quiet run nothing else is there."""
    if engine.dialect.name != "postgresql":
        return 0.0
    with engine.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    postmaster = int(_stat(backend)[1])
    fields = _stat(postmaster)
    total = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS  # reaped children
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                child = _stat(int(entry.name))
            except OSError:
                continue
            if int(child[1]) == postmaster:
                total += (int(child[11]) + int(child[12])) / CLOCK_TICKS
    return total


def _stat(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name: [state, ppid, …] (field 3 onward)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def measure_processes(engine: Engine, work: Callable[[], object], items: int) -> Figures:
    """Like :func:`measure`, for work that may run in child processes and close its own
    connections: this process's CPU and its finished children's, and the server's."""
    server_before, connected = server_cpu(engine), _backends(engine)
    children_before = _children_cpu()
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    work()
    wall, cpu = time.perf_counter() - wall_before, time.process_time() - cpu_before
    cpu += _children_cpu() - children_before
    _await_closed_backends(engine, connected)
    return Figures(items, wall, cpu, server_cpu(engine) - server_before)


def _await_closed_backends(engine: Engine, connected: int) -> None:
    """Wait (untimed) until the backends of the work's closed connections are gone and the
    postmaster has reaped them: only then is their CPU in its count of exited children."""
    deadline = time.monotonic() + 10
    while _backends(engine) > connected and time.monotonic() < deadline:
        time.sleep(0.05)
    if engine.dialect.name == "postgresql":
        time.sleep(0.5)  # from leaving pg_stat_activity to being reaped


def _backends(engine: Engine) -> int:
    """Connections to the benchmark's database (0 on SQLite)."""
    if engine.dialect.name != "postgresql":
        return 0
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            ).scalar_one()
        )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(installation: Tidings, work: Callable[[], object], items: int) -> Figures:
    """Run ``work`` and time it: wall, this process's CPU, the database backends' CPU."""
    server_before = backend_cpu(installation.db.engine)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    work()
    wall, cpu = time.perf_counter() - wall_before, time.process_time() - cpu_before
    return Figures(items, wall, cpu, backend_cpu(installation.db.engine) - server_before)


def fresh_installation(database_url: str | None) -> Tidings:
    """A migrated, empty database: a temporary SQLite file, or a recreated PostgreSQL DB."""
    if database_url:
        base = make_url(database_url).set(drivername="postgresql+psycopg")
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{BENCH_DB}"'))
        admin.dispose()
        url = base.set(database=BENCH_DB).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='tidings-bench-')) / 'bench.db'}"
    installation = build(load_settings(database_url=url, demo=True, egress_allow="127.0.0.0/8"))
    installation.migrate()
    return installation


def make_workspace(installation: Tidings, *, region: str = "TW") -> tuple[Workspace, str]:
    """A workspace with an owner key and a ``level`` choice field (gold/silver)."""
    with installation.db.transaction() as session:
        now = installation.clock.now()
        workspace, key = workspaces.open_workspace(
            session,
            slug="bench",
            settings=workspaces.WorkspaceSettings("Bench", region, "Asia/Taipei", "zh-Hant-TW"),
            owner_email=None,
            owner_password=None,
            key_name="bench",
            now=now,
        )
        contacts.create_field_definition(
            session,
            workspace=workspace,
            key="level",
            label="Level",
            field_type=CustomFieldType.CHOICE,
            choices=["gold", "silver"],
            now=now,
        )
    return workspace, key


def simulated_number(
    installation: Tidings, workspace_id: int, api_base_url: str, policy: dict[str, object]
) -> int:
    """The workspace's policy changed by ``policy``, and a number on the simulator at
    ``api_base_url`` (its default credentials); the number's id."""
    config = SimulatorConfig()
    with installation.db.transaction() as session:
        workspace = workspaces.get_workspace(session, workspace_id)
        assert workspace is not None
        now = installation.clock.now()
        workspaces.update_workspace(
            session, workspace=workspace, changes={"policy": policy}, now=now
        )
        number = channels.add_number(
            session,
            workspace=workspace,
            data={
                "name": "bench",
                "phone_number_id": config.phone_number_id,
                "business_account_id": config.business_account_id,
                "display_phone_number": "+" + config.display_phone_number,
                "api_base_url": api_base_url,
                "access_token": config.access_token,
                "app_secret": config.app_secret,
                "verify_token": "bench-verify-token",
            },
            box=installation.secret_box,
            now=now,
        )
        return number.id


def machine() -> str:
    parts = [
        platform.node(),
        f"{os.cpu_count()} cores",
        f"Python {platform.python_version()}",
        f"{datetime.now(UTC):%Y-%m-%d}",
    ]
    return " · ".join(parts)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]
