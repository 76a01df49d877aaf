"""``tidings simulator``: run the local WhatsApp Cloud API stand-in in the foreground."""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from tidings.cli.common import console
from tidings.simulator.server import SimulatorConfig, start_simulator


def simulator(
    webhook_url: Annotated[
        str | None,
        typer.Option(help="Where to post status and customer webhooks (a number's webhook URL)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
    access_token: Annotated[str, typer.Option(help="Bearer token senders must present.")] = (
        SimulatorConfig.access_token
    ),
    app_secret: Annotated[str, typer.Option(help="Secret that signs the webhooks.")] = (
        SimulatorConfig.app_secret
    ),
    phone_number_id: Annotated[str, typer.Option(help="The simulated number's id.")] = (
        SimulatorConfig.phone_number_id
    ),
    transient_error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of sends refused with 131000/130429.")
    ] = 0.0,
    permanent_error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of sends failing later with 131026.")
    ] = 0.0,
    refusal_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of sends refused at once with 131026.")
    ] = 0.0,
    duplicate_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of webhooks posted twice.")
    ] = 0.0,
    reorder: Annotated[bool, typer.Option(help="Let status webhooks arrive out of order.")] = False,
    latency: Annotated[float, typer.Option(min=0, help="Seconds added to every send.")] = 0.0,
    chatter_every: Annotated[
        float | None, typer.Option(min=1, help="Seconds between unprompted customer messages.")
    ] = None,
    no_limits: Annotated[
        bool, typer.Option("--no-limits", help="Lift throughput, pair and window limits.")
    ] = False,
    no_window: Annotated[
        bool, typer.Option("--no-window", help="Lift only the 24-hour window check.")
    ] = False,
) -> None:
    """Serve the simulated Cloud API until Ctrl-C; its ledger is at /_simulator/ledger."""
    config = SimulatorConfig(
        webhook_url=webhook_url,
        access_token=access_token,
        app_secret=app_secret,
        phone_number_id=phone_number_id,
        transient_error_rate=transient_error_rate,
        permanent_error_rate=permanent_error_rate,
        refusal_rate=refusal_rate,
        duplicate_rate=duplicate_rate,
        reorder=reorder,
        latency=latency,
        chatter_every=chatter_every,
    )
    if no_limits:
        config.throughput_per_second = config.pair_interval = None
        config.enforce_window = False
    if no_window:
        config.enforce_window = False
    try:
        running = start_simulator(config, host=host, port=port)
    except RuntimeError as error:
        console.print(f"[red]{error}[/] (is port {port} free?)")
        raise typer.Exit(1) from None
    console.print(f"WhatsApp simulator on {running.url}  (ledger: {running.url}/_simulator/ledger)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
