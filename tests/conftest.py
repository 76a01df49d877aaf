"""Fixtures: a clean database per test (SQLite always; PostgreSQL when
``TIDINGS_TEST_DATABASE_URL`` is set), an installation on a virtual clock, and API clients."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tidings.bootstrap import Tidings, build
from tidings.db.metadata import target_metadata
from tidings.db.migrate import upgrade
from tidings.kernel.clock import VirtualClock
from tidings.settings import load_settings
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import Role

START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # a Monday, 14:00 in Taipei
POSTGRES_URL = os.environ.get("TIDINGS_TEST_DATABASE_URL", "")
ON_POSTGRES_ONLY = "set TIDINGS_TEST_DATABASE_URL=postgresql://… to run them"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test of PostgreSQL's own behaviour is not run on SQLite: it is left out of the run
    (counted as deselected, named in the summary), not skipped."""
    if POSTGRES_URL:
        return
    left_out = [item for item in items if item.get_closest_marker("postgres_only")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("postgres_only")]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if not POSTGRES_URL:
        terminalreporter.write_line(f"PostgreSQL-only tests were left out: {ON_POSTGRES_ONLY}")


def _worker_name() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test process's own on the given server, migrated once."""
    base = make_url(POSTGRES_URL)
    name = f"tidings_test_{_worker_name()}"
    admin = create_engine(base.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    installation = build(load_settings(database_url=url))
    installation.migrate()
    installation.close()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (faster than migrating per test)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    installation = build(load_settings(database_url=f"sqlite:///{path}"))
    upgrade(installation.db.engine)
    installation.close()  # closing the last connection checkpoints the WAL into the file
    return path


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if POSTGRES_URL:
        url: str = request.getfixturevalue("postgres_url")
        _truncate_all(url)
        return url
    template: Path = request.getfixturevalue("sqlite_template")
    target = tmp_path / "tidings.db"
    shutil.copy(template, target)
    for suffix in ("-wal", "-shm"):
        if Path(f"{template}{suffix}").exists():
            shutil.copy(f"{template}{suffix}", f"{target}{suffix}")
    return f"sqlite:///{target}"


def _truncate_all(url: str) -> None:
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    tables = ", ".join(f'"{t.name}"' for t in target_metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def tidings(database_url: str, clock: VirtualClock, tmp_path: Path) -> Iterator[Tidings]:
    installation = build(
        load_settings(
            database_url=database_url,
            data_dir=tmp_path / "data",
            demo=True,
            # The operator's permission for the WhatsApp adapter to reach the local simulator.
            egress_allow="127.0.0.0/8",
        ),
        clock=clock,
    )
    yield installation
    installation.close()


@dataclass
class Tenant:
    """A workspace with an owner and an API key of each role."""

    workspace_id: int
    slug: str
    owner_id: int
    keys: dict[Role, str]

    def headers(self, role: Role = Role.OWNER) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


def make_tenant(
    tidings: Tidings, slug: str, *, region: str = "TW", timezone: str = "Asia/Taipei"
) -> Tenant:
    with tidings.db.transaction() as session:
        now = tidings.clock.now()
        workspace = workspaces.create_workspace(
            session,
            slug=slug,
            settings=workspaces.WorkspaceSettings(f"Shop {slug}", region, timezone, "zh-Hant-TW"),
            now=now,
        )
        owner = workspaces.create_user(
            session,
            workspace=workspace,
            email=f"owner@{slug}.example",
            name="Owner",
            role=Role.OWNER,
            password="a long password",
            granted_by=Role.OWNER,
            now=now,
        )
        keys = {}
        for role in Role:
            _, keys[role] = workspaces.create_api_key(
                session,
                workspace=workspace,
                name=f"{role.value} key",
                role=role,
                granted_by=Role.OWNER,
                created_by_user_id=owner.id,
                now=now,
            )
        return Tenant(workspace.id, slug, owner.id, keys)


@pytest.fixture
def tenant(tidings: Tidings) -> Tenant:
    return make_tenant(tidings, "taipei-shop")


@pytest.fixture
def client(tidings: Tidings) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from tidings.api.app import create_app

    with TestClient(create_app(tidings)) as test_client:
        yield test_client
