"""``tidings intents …``: how well intent detection does on labelled messages (A5)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tidings.automation.intents import (
    SHIPPED_SETS,
    Example,
    IntentDetector,
    Report,
    built_in_detector,
    evaluate_detector,
    read_examples,
    shipped_examples,
)
from tidings.cli.common import console

intents_app = typer.Typer(help="Intent detection: evaluate it on labelled messages.")


@intents_app.command("evaluate")
def evaluate(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help='Your own JSON Lines of {"text", "language", "intent"} (null: no intent); '
            "by default the shipped training and held-out sets.",
        ),
    ] = None,
    mistakes: Annotated[bool, typer.Option(help="List every wrong answer.")] = False,
) -> None:
    """Precision and recall per intent, accuracy per language."""
    sets: dict[str, list[Example]]
    if file is not None:
        if not file.is_file():
            console.print(f"[red]{escape(str(file))}: no such file[/red]")
            raise typer.Exit(2)
        try:
            sets = {str(file): read_examples(file.read_text(encoding="utf-8").splitlines())}
        except (ValueError, UnicodeDecodeError) as error:
            console.print(f"[red]{escape(str(file))}: {escape(str(error))}[/red]")
            raise typer.Exit(2) from None
    else:
        sets = {name: shipped_examples(name) for name in SHIPPED_SETS}
    detector: IntentDetector = built_in_detector()
    for name, examples in sets.items():
        report = evaluate_detector(detector, examples)
        _show(name, report, mistakes)


def _show(name: str, report: Report, mistakes: bool) -> None:
    table = Table(
        title=f"{escape(name)}: {report.examples} messages, accuracy {report.accuracy:.1%}"
    )
    table.add_column("intent")
    table.add_column("precision", justify="right")
    table.add_column("recall", justify="right")
    table.add_column("messages", justify="right")
    for scores in report.per_intent:
        table.add_row(
            scores.intent, f"{scores.precision:.1%}", f"{scores.recall:.1%}", str(scores.support)
        )
    console.print(table)
    languages = ", ".join(f"{k} {v:.1%}" for k, v in report.per_language.items())
    console.print(f"accuracy per language: {languages}")
    if mistakes:
        for example, said in report.mistakes:
            console.print(
                f"  {example.language} {escape(example.text)!r}: "
                f"labelled {example.intent or 'none'}, detected {said or 'none'}"
            )
