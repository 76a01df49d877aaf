"""The ``tidings`` command: serve, worker, init and the sub-commands of each domain."""

from __future__ import annotations

import os
import threading
from typing import Annotated

import typer

from tidings.api.app import create_app
from tidings.api.serving import GracefulServer
from tidings.bootstrap import Tidings
from tidings.cli.common import console, installation, require_schema
from tidings.cli.contacts import contacts_app
from tidings.cli.intents import intents_app
from tidings.cli.logs import configure_logging
from tidings.cli.sequences import sequences_app
from tidings.cli.simulator import simulator
from tidings.cli.webhooks import webhooks_app
from tidings.cli.workspaces import apikey_app, init, workspace_app
from tidings.demo.service import (
    DEMO_OWNER_EMAIL,
    DEMO_PASSWORD,
    DEMO_SLUG,
    connect_demo_number,
    find_demo_workspace,
    seed_demo,
)
from tidings.simulator.server import RunningSimulator, SimulatorConfig, start_simulator
from tidings.workspaces.domain import Role
from tidings.workspaces.service import create_api_key

app = typer.Typer(
    help="Tidings: social CRM and marketing automation, WhatsApp first.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(init)
app.add_typer(workspace_app, name="workspace")
app.add_typer(apikey_app, name="apikey")
app.add_typer(contacts_app, name="contacts")
app.add_typer(sequences_app, name="sequences")
app.add_typer(intents_app, name="intents")
app.add_typer(webhooks_app, name="webhooks")
app.command()(simulator)
DEMO_CHATTER_SECONDS = 20.0


def _demo_key(inst: Tidings) -> str:
    """Seed the demo workspace once; keep its API key in the data folder to show it again."""
    key_file = inst.settings.data_dir / "demo-api-key.txt"
    with inst.db.transaction() as session:
        now = inst.clock.now()
        workspace = find_demo_workspace(session)
        if workspace is None:
            _, key = seed_demo(session, now=now)
        elif key_file.is_file():
            return key_file.read_text().strip()
        else:
            _, key = create_api_key(
                session,
                workspace=workspace,
                name="demo",
                role=Role.ADMIN,
                granted_by=Role.OWNER,
                created_by_user_id=None,
                now=now,
            )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    os.chmod(key_file, 0o600)
    return key


@app.command()
def serve(
    demo: Annotated[bool, typer.Option("--demo", help="Seed and open a demo workspace.")] = False,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    worker: Annotated[bool, typer.Option(help="Run the embedded worker in this process.")] = True,
) -> None:
    """Run the API and web app (and, by default, one embedded worker) on one machine."""
    # A demo's WhatsApp is the simulator on this machine: the demo, and only it, lets the
    # adapter reach loopback (otherwise the operator's TIDINGS_EGRESS_ALLOW decides).
    overrides: dict[str, object] = {"demo": True, "egress_allow": "127.0.0.0/8"} if demo else {}
    # --host and --port are settings like any other: without a configured public URL, every
    # URL the product gives out (webhook URLs, e-mail links) then names where it really serves.
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    with installation(**overrides) as inst:
        settings = inst.settings
        settings.check_production_ready()
        configure_logging(settings.log_level)
        inst.migrate()
        chosen_host, chosen_port = settings.host, settings.port
        simulated = None
        if settings.demo:
            key = _demo_key(inst)
            console.print(f"Demo workspace ready. API key: [bold green]{key}[/]")
            console.print(
                f"Web app: http://{chosen_host}:{chosen_port}/app — workspace {DEMO_SLUG!r}, "
                f"{DEMO_OWNER_EMAIL} or mei@demo-shop.example (an agent), password {DEMO_PASSWORD}"
            )
            simulated = _start_demo_simulator(inst, chosen_host, chosen_port)
        console.print(
            f"Tidings on http://{chosen_host}:{chosen_port}  (web app: /app, API docs: /docs)"
        )
        embedded = inst.make_worker(embedded=True) if worker else None
        thread = (
            threading.Thread(target=embedded.run_forever, name="worker", daemon=True)
            if embedded
            else None
        )
        if thread is not None:
            thread.start()
        try:
            GracefulServer(
                create_app(inst),
                host=chosen_host,
                port=chosen_port,
                log_level=settings.log_level.lower(),
            ).run()
        finally:
            if embedded is not None and thread is not None:
                embedded.stop()
                thread.join(timeout=30)
            if simulated is not None:
                simulated.stop()


def _start_demo_simulator(inst: Tidings, host: str, port: int) -> RunningSimulator:
    """Start the WhatsApp simulator and wire the demo number to it, both ways."""
    config = SimulatorConfig(chatter_every=DEMO_CHATTER_SECONDS)
    running = start_simulator(config)
    with inst.db.transaction() as session:
        workspace = find_demo_workspace(session)
        assert workspace is not None  # seeded just before
        path = connect_demo_number(
            session,
            workspace=workspace,
            box=inst.secret_box,
            simulator=config,
            simulator_url=running.url,
            now=inst.clock.now(),
        )
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - mapping, not binding
    config.webhook_url = f"http://{local}:{port}{path}"
    console.print(
        f"WhatsApp simulator on {running.url}: customers write every {DEMO_CHATTER_SECONDS:g} s "
        f"(ledger: {running.url}/_simulator/ledger)"
    )
    return running


@app.command("worker")
def worker_command() -> None:
    """Run the scale-out worker loop until SIGTERM/SIGINT (then finish the batch in flight)."""
    with installation() as inst:
        inst.settings.check_production_ready()
        configure_logging(inst.settings.log_level)
        require_schema(inst)
        loop = inst.make_worker()
        loop.install_signal_handlers()
        console.print(f"Worker {loop.worker_id} running; Ctrl-C stops it after the current batch.")
        loop.run_forever()


@app.command()
def version() -> None:
    """Print the version."""
    from tidings import __version__

    console.print(__version__)


def run() -> None:
    """Console-script entry point."""
    app()
