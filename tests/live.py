"""Real servers for tests: Tidings over HTTP on a free port and the WhatsApp simulator wired to
it, both ways, so webhooks and sends cross real sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from tests.conftest import Tenant
from tidings.api.app import create_app
from tidings.api.serving import GRACEFUL_SHUTDOWN_SECONDS, GracefulServer
from tidings.bootstrap import Tidings
from tidings.channels import service as channels
from tidings.kernel.clock import VirtualClock
from tidings.scheduler.worker import Worker
from tidings.simulator.server import RunningSimulator, SimulatorConfig, start_simulator
from tidings.workspaces import service as workspaces


def start_server(tidings: Tidings) -> tuple[GracefulServer, threading.Thread, str]:
    """Tidings served on a free port in a thread, as `tidings serve` serves it; returns once
    it listens: the server (set ``should_exit`` to stop it), its thread and its address."""
    server = GracefulServer(create_app(tidings), host="127.0.0.1", port=0, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a loaded machine starts slowly; the wait ends at once
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "Tidings did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


@contextmanager
def serve_app(tidings: Tidings) -> Iterator[str]:
    server, thread, url = start_server(tidings)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=GRACEFUL_SHUTDOWN_SECONDS + 5)
        assert not thread.is_alive(), "the server did not stop"


def fast_config(**changes: Any) -> SimulatorConfig:
    """A simulator whose customers answer at once and always read, for quick tests."""
    config = SimulatorConfig(
        sent_delay=0.02,
        delivered_delay=0.05,
        read_delay=0.08,
        read_rate=1.0,
        reply_rate=0.0,
        reply_delay=0.05,
    )
    config.update(changes)
    return config


@dataclass
class Stack:
    """Tidings served over HTTP, a tenant with a number on the simulator, and a worker."""

    tidings: Tidings
    tenant: Tenant
    app_url: str
    simulator: RunningSimulator
    number_id: int
    worker: Worker
    api: httpx.Client

    @property
    def clock(self) -> VirtualClock:
        clock = self.tidings.clock
        assert isinstance(clock, VirtualClock)
        return clock

    def drain(
        self,
        done: Callable[[], bool],
        *,
        timeout: float = 60.0,  # a ceiling for a loaded machine: the drain ends once done
        advance_seconds: float = 0.0,
    ) -> None:
        """Run the worker (moving the virtual clock on) until ``done()`` or the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.worker.run_once()
            if done():
                return
            assert time.monotonic() < deadline, "the pipeline did not settle in time"
            if advance_seconds:
                self.clock.advance(timedelta(seconds=advance_seconds))
            time.sleep(0.03)

    def messages(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for conversation in self.api.get("/api/v1/conversations", params={"limit": 200}).json()[
            "items"
        ]:
            found += self.api.get(
                f"/api/v1/conversations/{conversation['id']}/messages", params={"limit": 200}
            ).json()["items"]
        return found

    def ledger(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = httpx.get(f"{self.simulator.url}/_simulator/ledger").json()[
            "entries"
        ]
        return entries


@contextmanager
def simulated_number(
    tidings: Tidings, tenant: Tenant, config: SimulatorConfig
) -> Iterator[tuple[RunningSimulator, int, str]]:
    """A running simulator and a number of ``tenant`` that sends to it: (simulator, number
    id, the number's webhook path)."""
    simulator = start_simulator(config, clock=tidings.clock)
    try:
        with tidings.db.transaction() as session:
            workspace = workspaces.get_workspace(session, tenant.workspace_id)
            assert workspace is not None
            number = channels.add_number(
                session,
                workspace=workspace,
                data={
                    "name": "Simulated shop",
                    "phone_number_id": config.phone_number_id,
                    "business_account_id": config.business_account_id,
                    "display_phone_number": "+" + config.display_phone_number,
                    "api_base_url": simulator.url,
                    "access_token": config.access_token,
                    "app_secret": config.app_secret,
                    "verify_token": "a verify token",
                },
                box=tidings.secret_box,
                now=tidings.clock.now(),
            )
            number_id, path = number.id, channels.webhook_path(number)
        yield simulator, number_id, path
    finally:
        simulator.stop()


@contextmanager
def live_stack(tidings: Tidings, tenant: Tenant, config: SimulatorConfig) -> Iterator[Stack]:
    with (
        simulated_number(tidings, tenant, config) as (simulator, number_id, path),
        serve_app(tidings) as app_url,
        httpx.Client(base_url=app_url, headers=tenant.headers(), timeout=10) as api,
    ):
        config.webhook_url = app_url + path
        yield Stack(tidings, tenant, app_url, simulator, number_id, tidings.make_worker(), api)
