"""What the browser tests share: Debian's Chromium through Playwright, Tidings served over
HTTP with a worker running beside it (as ``tidings serve`` runs it), signing in, and
screenshots for the README."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import Tenant
from tests.live import Stack, fast_config, live_stack
from tidings.bootstrap import Tidings
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import Role

CHROMIUM = Path("/usr/bin/chromium")
# The page waits on a worker, a simulator and sometimes a second server sharing two cores with
# the browser: an answer may take seconds under load, which is not what these tests judge.
expect.set_options(timeout=15_000)
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
PASSWORD = "a long agent password"


@pytest.fixture(scope="session", autouse=True)
def _chromium_is_there() -> None:
    """CI must have Chromium; a developer's run without it says how to get it, test by test."""
    if CHROMIUM.exists():
        return
    how = "apt-get install chromium chromium-driver fonts-noto-cjk fonts-thai-tlwg"
    if os.environ.get("CI"):
        pytest.fail(f"CI needs Debian's chromium at {CHROMIUM}: {how}", pytrace=False)
    pytest.skip(f"needs Debian's chromium at {CHROMIUM}: {how}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def stack(tidings: Tidings, tenant: Tenant) -> Iterator[Stack]:
    with live_stack(tidings, tenant, fast_config()) as running:
        stop = threading.Event()

        failures: list[BaseException] = []

        def work() -> None:  # the worker, as `tidings serve` runs it beside the app
            while not stop.is_set():
                try:
                    running.worker.run_once()
                except BaseException as error:  # surfaced below: a dead worker fails the test
                    failures.append(error)
                    raise
                # Time passes as it would (the live feed notices changes by their time).
                running.clock.advance(timedelta(milliseconds=50))
                stop.wait(0.05)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        yield running
        stop.set()
        thread.join(timeout=10)
        assert not failures, f"the worker died: {failures[0]!r}"


def add_user(
    tidings: Tidings, tenant: Tenant, *, email: str, name: str, role: Role = Role.AGENT
) -> str:
    """A user of the tenant who signs in with ``PASSWORD``; returns their e-mail."""
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        workspaces.create_user(
            session,
            workspace=workspace,
            email=email,
            name=name,
            role=role,
            password=PASSWORD,
            granted_by=Role.OWNER,
            now=tidings.clock.now(),
        )
    return email


def add_agent(tidings: Tidings, tenant: Tenant) -> str:
    return add_user(tidings, tenant, email="mei@teahouse.example", name="Mei")


def add_marketer(tidings: Tidings, tenant: Tenant) -> str:
    """An admin: sequences, rules and broadcasts are theirs to change (agents only read)."""
    return add_user(tidings, tenant, email="ploy@teahouse.example", name="Ploy", role=Role.ADMIN)


def sign_in(page: Page, base: str, tenant: Tenant, email: str, password: str) -> None:
    page.goto(f"{base}/app/login")
    page.fill("input[name=workspace]", tenant.slug)
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def shot(page: Page, name: str, tmp_path: Path) -> None:
    """Screenshots for the README when TIDINGS_SCREENSHOTS is set; otherwise a throwaway."""
    folder = SCREENSHOTS if os.environ.get("TIDINGS_SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))
