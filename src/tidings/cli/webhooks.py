"""``tidings webhooks``: the quarantine of WhatsApp updates, listed and replayed (#22)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tidings.channels import service
from tidings.cli.common import console, installation, pick_workspace, require_schema
from tidings.cli.workspaces import WorkspaceOption

webhooks_app = typer.Typer(help="WhatsApp webhook updates kept aside (quarantine).")


@webhooks_app.command("quarantine")
def quarantine_command(
    workspace: WorkspaceOption = None,
    show_raw: Annotated[bool, typer.Option("--raw", help="Print each update's JSON.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=service.QUARANTINE_PAGE)] = 50,
) -> None:
    """Updates that could not be understood or kept failing, oldest first, with the reason."""
    with installation() as inst:
        require_schema(inst)
        with inst.db.reading() as session:
            chosen = pick_workspace(session, workspace)
            rows = service.list_quarantine(session, chosen, limit=limit)
            total = service.count_quarantined(session, chosen.id)
        if not rows:
            console.print("No update is in quarantine.")
            return
        table = Table("id", "kind", "key", "received", "attempts", "reason")
        for row in rows:
            table.add_row(
                str(row.id),
                row.kind,
                escape(row.event_key[:60]),
                row.received_at.isoformat(timespec="seconds"),
                str(row.attempts),
                escape(row.last_error or ""),
            )
        console.print(table)
        if show_raw:
            for row in rows:
                console.print(f"[bold]{row.id}[/]")
                console.print_json(json.dumps(row.payload, ensure_ascii=False))
        console.print(f"{len(rows)} of {total} shown. Replay with `tidings webhooks replay`.")


@webhooks_app.command("replay")
def replay_command(
    ids: Annotated[list[int] | None, typer.Argument(help="Ids from the quarantine list.")] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="Every quarantined update of the workspace.")
    ] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Process quarantined updates again once their cause is fixed (the worker picks them up;
    a message is never filed twice)."""
    if replay_all == bool(ids):
        raise typer.BadParameter("give the ids to replay, or --all", param_hint="IDS")
    with installation() as inst:
        require_schema(inst)
        with inst.db.transaction() as session:
            chosen = pick_workspace(session, workspace)
            replayed = service.replay_quarantined(
                session, chosen, ids=None if replay_all else list(ids or [])
            )
        console.print(f"{replayed} update(s) back in the intake; the worker processes them next.")
