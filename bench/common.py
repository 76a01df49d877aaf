"""Shared set-up of the benchmarks: a fresh database, a workspace, timing and reporting."""

from __future__ import annotations

import platform
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
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
    import os

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
