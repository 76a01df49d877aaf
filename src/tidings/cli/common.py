"""What every CLI command shares: the installation, the chosen workspace, error display."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.orm import Session

from tidings.bootstrap import Tidings, build, tune_garbage_collector
from tidings.db.migrate import current_revision, head_revision
from tidings.kernel.errors import TidingsError, invalid
from tidings.settings import load_settings
from tidings.workspaces import service
from tidings.workspaces.orm import Workspace

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


@contextmanager
def installation(**overrides: object) -> Iterator[Tidings]:
    """Build from the environment; any ``TidingsError`` becomes a message and exit code 2."""
    try:
        inst = build(load_settings(**overrides))
        tune_garbage_collector()
    except TidingsError as error:
        errors.print(f"[bold red]error[/]: {escape(error.message)}", highlight=False)
        raise typer.Exit(2) from None
    try:
        yield inst
    except TidingsError as error:
        where = f" ({error.field})" if error.field else ""
        errors.print(f"[bold red]error[/]{escape(where)}: {escape(error.message)}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        inst.close()


def require_schema(inst: Tidings) -> None:
    """Raises ``TidingsError`` unless migrations are applied (``tidings init`` does that)."""
    if current_revision(inst.db.engine) != head_revision():
        raise TidingsError(
            "migrations_pending", "the database schema is not current: run `tidings init` first"
        )


def pick_workspace(session: Session, slug: str | None) -> Workspace:
    """The workspace named by ``--workspace``, or the only one there is.

    Raises:
        TidingsError: unknown slug, or several workspaces and none chosen.
    """
    if slug:
        found = service.find_workspace(session, slug)
        if found is None:
            raise invalid("unknown_workspace", f"no workspace {slug!r}", field="--workspace")
        return found
    every = service.list_workspaces(session)
    if len(every) == 1:
        return every[0]
    if not every:
        raise invalid("no_workspace", "no workspace yet: run `tidings init`", field="--workspace")
    slugs = ", ".join(w.slug for w in every)
    raise invalid(
        "choose_workspace", f"several workspaces ({slugs}): pass --workspace", field="--workspace"
    )


def in_transaction(inst: Tidings) -> Callable[[Callable[[Session], T]], T]:
    """A ``run_batch`` that gives each batch its own committed transaction."""

    def run(work: Callable[[Session], T]) -> T:
        with inst.db.transaction() as session:
            return work(session)

    return run


def is_interactive() -> bool:
    return sys.stdout.isatty()
