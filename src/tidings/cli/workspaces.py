"""``tidings init``, ``tidings workspace …`` and ``tidings apikey …``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tidings.automation.defaults import install_defaults
from tidings.cli.common import console, installation, pick_workspace, require_schema
from tidings.settings import PLACEHOLDER_SECRET, SECRET_FILE, ensure_secret_file, load_settings
from tidings.workspaces import service
from tidings.workspaces.domain import Role

workspace_app = typer.Typer(help="Create and list workspaces (tenants).", no_args_is_help=True)
apikey_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

WorkspaceOption = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace slug.")]


def init(
    name: Annotated[str, typer.Option(help="Name of the first workspace.")] = "My Shop",
    slug: Annotated[str, typer.Option(help="Its slug.")] = "main",
    region: Annotated[str, typer.Option(help="Default region for local phone numbers.")] = "TW",
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = "Asia/Taipei",
    locale: Annotated[str, typer.Option(help="Default locale.")] = "zh-Hant-TW",
    owner_email: Annotated[str, typer.Option(help="E-mail of the owner.")] = "owner@example.com",
    owner_password: Annotated[
        str | None, typer.Option(help="Owner's password (10+ chars).")
    ] = None,
) -> None:
    """Create or upgrade the database; on an empty one, add a workspace, its owner and a key.

    Without TIDINGS_SECRET_KEY, a generated secret is written into the data folder (mode
    0600) and used by every later command on this machine."""
    settings = load_settings()
    if settings.secret_key.get_secret_value() == PLACEHOLDER_SECRET:
        ensure_secret_file(settings.data_dir)
        console.print(f"A secret key was generated in {settings.data_dir / SECRET_FILE}.")
    with installation() as inst:
        inst.migrate()
        with inst.db.transaction() as session:
            if service.list_workspaces(session):
                console.print("Database is up to date.")
                return
            workspace, key = service.open_workspace(
                session,
                slug=slug,
                settings=service.WorkspaceSettings(name, region, timezone, locale),
                owner_email=owner_email,
                owner_password=owner_password,
                key_name="created by init",
                now=inst.clock.now(),
            )
            install_defaults(session, workspace, now=inst.clock.now())
        console.print(f"Created workspace [bold]{slug}[/] with owner {owner_email}.")
        console.print(f"API key (shown once, keep it safe): [bold green]{key}[/]")


@workspace_app.command("create")
def create_workspace(
    slug: str,
    name: Annotated[str, typer.Option(help="Display name.")],
    region: Annotated[str, typer.Option()] = "TW",
    timezone: Annotated[str, typer.Option()] = "Asia/Taipei",
    locale: Annotated[str, typer.Option()] = "zh-Hant-TW",
) -> None:
    """Add another workspace, with an owner API key."""
    with installation() as inst:
        require_schema(inst)
        with inst.db.transaction() as session:
            workspace, key = service.open_workspace(
                session,
                slug=slug,
                settings=service.WorkspaceSettings(name, region, timezone, locale),
                owner_email=None,
                owner_password=None,
                key_name="created with workspace",
                now=inst.clock.now(),
            )
            install_defaults(session, workspace, now=inst.clock.now())
        console.print(
            f"Created workspace [bold]{slug}[/]. API key (shown once): [bold green]{key}[/]"
        )


@workspace_app.command("list")
def list_workspaces() -> None:
    """Show every workspace."""
    with installation() as inst, inst.db.reading() as session:
        table = Table("slug", "name", "region", "time zone", "locale")
        for w in service.list_workspaces(session):
            table.add_row(w.slug, w.name, w.default_region, w.timezone, w.locale)
        console.print(table)


@workspace_app.command("allow-private-webhooks")
def allow_private_webhooks(
    slug: str,
    allow: Annotated[bool, typer.Option("--allow/--refuse", help="Allow or refuse again.")] = True,
) -> None:
    """Let this workspace's webhooks reach private and loopback addresses (an n8n or a CRM on
    your own network). Only the operator can: a workspace cannot allow it for itself."""
    with installation() as inst:
        require_schema(inst)
        with inst.db.transaction() as session:
            chosen = pick_workspace(session, slug)
            service.allow_private_webhooks(session, chosen, allow=allow, now=inst.clock.now())
        verdict = "may now reach" if allow else "may no longer reach"
        console.print(f"Webhooks of [bold]{slug}[/] {verdict} private addresses.")


@apikey_app.command("create")
def create_api_key(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    role: Annotated[Role, typer.Option(help="What the key may do.")] = Role.ADMIN,
    workspace: WorkspaceOption = None,
) -> None:
    """Make a key; it is printed once and only its digest is stored."""
    with installation() as inst:
        require_schema(inst)
        with inst.db.transaction() as session:
            chosen = pick_workspace(session, workspace)
            _, key = service.create_api_key(
                session,
                workspace=chosen,
                name=name,
                role=role,
                granted_by=Role.OWNER,
                created_by_user_id=None,
                now=inst.clock.now(),
            )
        console.print(key, highlight=False, soft_wrap=True)


@apikey_app.command("list")
def list_api_keys(workspace: WorkspaceOption = None) -> None:
    """Show the keys of a workspace (prefixes only)."""
    with installation() as inst, inst.db.reading() as session:
        table = Table("id", "name", "role", "prefix", "created", "revoked")
        for k in service.list_api_keys(session, pick_workspace(session, workspace)):
            table.add_row(
                str(k.id),
                k.name,
                k.role,
                k.prefix + "…",
                f"{k.created_at:%Y-%m-%d %H:%M}",
                f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
            )
        console.print(table)


@apikey_app.command("revoke")
def revoke_api_key(key_id: int, workspace: WorkspaceOption = None) -> None:
    """Revoke a key at once."""
    with installation() as inst, inst.db.transaction() as session:
        service.revoke_api_key(
            session,
            workspace=pick_workspace(session, workspace),
            key_id=key_id,
            now=inst.clock.now(),
        )
        console.print(f"Revoked key {key_id}.")
