"""``tidings contacts import`` and ``tidings contacts export`` (X5)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tidings.cli.common import (
    console,
    errors,
    in_transaction,
    installation,
    pick_workspace,
    require_schema,
)
from tidings.contacts import jobs
from tidings.contacts.csv_import import write_export
from tidings.contacts.service import count_all_contacts
from tidings.kernel.errors import invalid

contacts_app = typer.Typer(help="Import and export contacts as CSV.", no_args_is_help=True)


def _parse_map(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        column, sep, target = pair.partition("=")
        if not sep or not column.strip() or not target.strip():
            raise invalid("bad_map", f"{pair!r}: write COLUMN=FIELD", field="--map")
        mapping[column.strip()] = target.strip()
    return mapping


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@contacts_app.command("import")
def import_contacts(
    file: Annotated[Path, typer.Argument(help="UTF-8 CSV, first line = column names.")],
    workspace: Annotated[str | None, typer.Option("--workspace", "-w")] = None,
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="COLUMN=FIELD, e.g. 'Mobile No=phone'.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=50_000)] = jobs.DEFAULT_BATCH,
) -> None:
    """Upsert contacts from a CSV file; bad rows go to FILE.errors.csv with line and reason.

    Exit code 0 when every row was imported, 1 when some rows were rejected, 2 when the file
    could not be read at all.
    """
    with installation() as inst:
        require_schema(inst)
        with inst.db.reading() as session:
            chosen = pick_workspace(session, workspace)
        total = jobs.count_data_lines(file) if file.is_file() else 0
        with _progress() as progress:
            task = progress.add_task(f"Importing {file.name}", total=total)
            report = jobs.import_csv_file(
                file,
                workspace=chosen,
                run_batch=in_transaction(inst),
                clock=inst.clock,
                source=f"import:{file.name}",
                column_map=_parse_map(mapping or []),
                batch_size=batch_size,
                on_progress=lambda done: progress.update(task, completed=done),
            )
    for warning in report.warnings:
        errors.print(f"[yellow]warning[/]: {escape(warning)}", highlight=False)
    table = Table("rows", "created", "updated", "unchanged", "rejected")
    table.add_row(
        *(
            str(n)
            for n in (report.rows, report.created, report.updated, report.unchanged, report.failed)
        )
    )
    console.print(table)
    if report.problems:
        for line, problem in report.problems[:10]:
            column = f" {problem.column}" if problem.column else ""
            errors.print(escape(f"line {line}{column}: {problem.message}"), highlight=False)
        errors.print(
            escape(f"All {len(report.problems)} problems: {report.error_file}"), highlight=False
        )
        raise typer.Exit(1)


@contacts_app.command("export")
def export_contacts(
    file: Annotated[Path, typer.Argument(help="Where to write the CSV.")],
    workspace: Annotated[str | None, typer.Option("--workspace", "-w")] = None,
) -> None:
    """Write every contact to a CSV file that `contacts import` reads back unchanged."""
    with installation() as inst, inst.db.reading() as session:
        require_schema(inst)
        chosen = pick_workspace(session, workspace)
        total = count_all_contacts(session, chosen)
        with _progress() as progress, file.open("w", encoding="utf-8", newline="") as out:
            task = progress.add_task(f"Exporting to {file.name}", total=total)
            for written in write_export(session, workspace=chosen, out=out):
                progress.update(task, completed=written)
        console.print(f"Wrote {total} contacts to {file}.")
