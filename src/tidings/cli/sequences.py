"""``tidings sequences …``: preview a sequence file, import and export files, list, statistics
(S5-S7). The commands call the same services as the API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from tidings.bootstrap import Tidings
from tidings.cli.common import console, errors, installation, pick_workspace, require_schema
from tidings.kernel.errors import TidingsError, invalid
from tidings.kernel.localization import check_timezone
from tidings.sequences import service
from tidings.sequences.files import read_sequence_file
from tidings.sequences.preview import BEHAVIOUR_HELP, Preview, parse_behaviours, preview
from tidings.workspaces.orm import Workspace
from tidings.workspaces.service import list_workspaces

sequences_app = typer.Typer(
    help="Preview, import, export and inspect sequences.", no_args_is_help=True
)
WorkspaceOption = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace slug.")]


def _read_text(file: Path) -> str:
    if not file.is_file():
        raise invalid("no_file", f"{file}: no such file", field="FILE")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise invalid("not_utf8", f"{file}: not UTF-8 text", field="FILE") from None


@contextmanager
def _reading(file: Path) -> Iterator[None]:
    """A problem in the file is reported as ``FILE: line N: …``."""
    try:
        yield
    except TidingsError as error:
        in_file = error.field is not None and error.field != "FILE" and error.field[0] != "-"
        if error.http_status == 422 and in_file:
            error.message = f"{file.name}: {error.message}"
        raise


def _start_from(text: str | None, now: datetime) -> datetime:
    if text is None:
        return now
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(
            "invalid_start", f"{text!r} is not an ISO date and time", field="--start"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@sequences_app.command("preview")
def preview_command(
    file: Annotated[Path, typer.Argument(help="A sequence file (YAML or JSON).")],
    behaviour: Annotated[
        list[str] | None,
        typer.Option("--behaviour", "-b", help=f"What the test lead does: {BEHAVIOUR_HELP}."),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="When the lead enrolls (ISO time; default now).")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="The lead's time zone (default: the workspace's).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag the lead starts with.")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Run a test lead through FILE on a virtual clock and print every message it would get,
    when, and every branch it takes. Nothing is stored or sent.

    With a database, the workspace's sending policy and time zone apply; without one, the
    defaults (UTC unless --timezone)."""
    with installation() as inst:
        with _reading(file):
            definition = read_sequence_file(_read_text(file))
        contact: dict[str, object] = {"tags": list(tag or [])}
        if timezone is not None:
            contact["timezone"] = check_timezone(timezone, field="--timezone")
        began = _start_from(start, inst.clock.now())
        chosen = _workspace_if_any(inst, workspace)
        if chosen is not None:
            with inst.db.reading() as session:
                result = service.preview_sequence(
                    session,
                    workspace=chosen,
                    definition=definition,
                    behaviours=behaviour or [],
                    contact=contact,
                    start=began,
                )
            zone = timezone or chosen.timezone
        else:
            zone = timezone or "UTC"
            console.print("[dim]No database yet: the default sending policy applies.[/]")
            result = preview(
                definition,
                start=began,
                behaviours=parse_behaviours(behaviour or []),
                contact=contact,
                timezone=zone,
            )
        _print_preview(definition.name, result, zone)


def _workspace_if_any(inst: Tidings, slug: str | None) -> Workspace | None:
    """The workspace whose policy a preview uses; none before ``tidings init`` (unless one
    is asked for by name)."""
    if slug is None:
        try:
            require_schema(inst)
        except TidingsError:
            return None
    with inst.db.reading() as session:
        if slug is None and not list_workspaces(session):
            return None
        chosen = pick_workspace(session, slug)
        session.expunge(chosen)
        return chosen


def _print_preview(name: str, result: Preview, zone: str) -> None:
    local = ZoneInfo(zone)
    table = Table("when", "step", "what", "detail", title=f"{name} (times in {zone})")
    for entry in result.entries:
        table.add_row(
            entry.at.astimezone(local).strftime("%a %Y-%m-%d %H:%M"),
            escape(entry.step_id or ""),
            entry.kind,
            escape(entry.text),
        )
    console.print(table)
    messages = len(result.messages)
    ending = (
        f"{result.ended} ({result.end_reason})" if result.ended else "still running a year later"
    )
    console.print(f"{messages} message{'s' if messages != 1 else ''}; {ending}.")


@sequences_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="A sequence file (YAML or JSON).")],
    name: Annotated[str | None, typer.Option(help="Save it under this name instead.")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Create a sequence (a draft) from FILE, with the templates it carries. Problems are
    reported with their line."""
    with installation() as inst:
        require_schema(inst)
        text = _read_text(file)
        with inst.db.transaction() as session, _reading(file):
            chosen = pick_workspace(session, workspace)
            imported = service.import_sequence(
                session,
                workspace=chosen,
                text=text,
                name=name,
                created_by=f"cli:{file.name}",
                now=inst.clock.now(),
            )
            sequence_name, sequence_id = imported.sequence.name, imported.sequence.id
        console.print(f"Imported [bold]{escape(sequence_name)}[/] as draft #{sequence_id}.")
        for template in imported.templates_defined:
            console.print(f"Defined template {escape(template)} (awaiting Meta's approval).")
        for template in imported.email_templates_defined:
            console.print(f"Created e-mail template {escape(template)}.")
        if imported.templates_without_number:
            carried = ", ".join(imported.templates_without_number)
            errors.print(
                f"[yellow]warning[/]: no WhatsApp number yet, so the templates it carries "
                f"({escape(carried)}) are not defined; define them once one is connected "
                "(POST /api/v1/templates)",
                highlight=False,
            )


@sequences_app.command("export")
def export_command(
    sequence: Annotated[str, typer.Argument(help="The sequence's name or id.")],
    file: Annotated[Path, typer.Argument(help="Where to write it (.yaml or .json).")],
    workspace: WorkspaceOption = None,
) -> None:
    """Write a sequence's current version and its templates to FILE; `import` reads it back."""
    as_json = file.suffix.lower() == ".json"
    with installation() as inst:
        require_schema(inst)
        with inst.db.reading() as session:
            chosen = pick_workspace(session, workspace)
            found = service.find_by_name_or_id(session, chosen, sequence)
            text = service.export_sequence(session, chosen, found.id, as_json=as_json)
        file.write_text(text, encoding="utf-8")
        console.print(f"Wrote {escape(found.name)} to {file}.")


@sequences_app.command("list")
def list_command(workspace: WorkspaceOption = None) -> None:
    """Every sequence of the workspace with its status and version."""
    with installation() as inst:
        require_schema(inst)
        with inst.db.reading() as session:
            chosen = pick_workspace(session, workspace)
            table = Table("id", "name", "status", "version")
            for found in service.list_sequences(session, chosen):
                table.add_row(
                    str(found.id), escape(found.name), found.status, str(found.current_version)
                )
        console.print(table)


@sequences_app.command("stats")
def stats_command(
    sequence: Annotated[str, typer.Argument(help="The sequence's name or id.")],
    version: Annotated[int | None, typer.Option(min=1, help="Only this version.")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Per step: entered, sent, delivered, read, clicked, replied, converted, exited (S5)."""
    with installation() as inst:
        require_schema(inst)
        with inst.db.reading() as session:
            chosen = pick_workspace(session, workspace)
            found = service.find_by_name_or_id(session, chosen, sequence)
            counts = service.step_statistics(session, chosen, found.id, version=version)
            definition = service.definition_of(service.get_version(session, found, version))
        table = Table("step", *service.STATISTICS, title=escape(found.name))
        for step in definition.steps:
            row = counts.get(step.id, dict.fromkeys(service.STATISTICS, 0))
            table.add_row(escape(step.id), *(str(row[name]) for name in service.STATISTICS))
        console.print(table)
