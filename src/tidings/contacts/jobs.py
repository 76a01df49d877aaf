"""CSV import and export as batch work: each batch in its own transaction (X5).

The caller says how a batch gets its transaction (``run_batch``): the CLI opens one per batch,
so a 100,000-row file commits as it goes and a re-run resumes for free (rows already written
are unchanged); the API runs an upload's batches in its request transaction.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO, TypeVar

from sqlalchemy.orm import Session

from tidings.contacts import csv_format, csv_import
from tidings.contacts.csv_format import ColumnPlan, ContactRow, RowProblem
from tidings.contacts.domain import FieldSpec
from tidings.contacts.service import field_specs
from tidings.kernel.clock import Clock
from tidings.kernel.errors import invalid
from tidings.workspaces.orm import Workspace

T = TypeVar("T")


class RunBatch(Protocol):
    """Runs one batch of work in a transaction chosen by the caller and returns its result."""

    def __call__(self, work: Callable[[Session], T], /) -> T: ...


DEFAULT_BATCH = 2000
ERROR_COLUMNS = ("line", "column", "value", "code", "message")


@dataclass(frozen=True)
class Place:
    """How far into a CSV text an import has read: characters and lines, both counted from
    the start of the text, so that an import can stop after any batch and resume exactly."""

    offset: int = 0
    line: int = 0


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[tuple[int, RowProblem]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error_file: Path | None = None
    place: Place = Place()
    finished: bool = False  # the end of the text was reached

    @property
    def failed(self) -> int:
        return len({line for line, _ in self.problems})


class BatchDone(Protocol):
    """Told of each batch inside the batch's own transaction: what it did, and where the
    import stands after it (the background import keeps its progress with its rows)."""

    def __call__(self, session: Session, batch: ImportReport, /) -> None: ...


def import_csv(
    stream: TextIO,
    *,
    workspace: Workspace,
    run_batch: RunBatch,
    clock: Clock,
    source: str,
    column_map: dict[str, str] | None = None,
    batch_size: int = DEFAULT_BATCH,
    on_progress: Callable[[int], None] | None = None,
    resume_at: Place | None = None,
    keep_going: Callable[[], bool] | None = None,
    on_batch: BatchDone | None = None,
) -> ImportReport:
    """Import contacts from an open CSV text stream, batch by batch.

    ``resume_at`` continues where an earlier call stopped (the stream must be seekable, with
    character offsets: an ``io.StringIO``); ``keep_going`` is asked before every batch after
    the first, and a ``False`` stops the import there (``finished`` stays false).

    Raises:
        TidingsError: for a file-level problem (header, encoding, CSV syntax), with the line.
    """
    lines = _Lines(stream)
    reader = csv.reader(lines)
    header = _next_row(reader)
    if header is None:
        raise invalid("empty_file", "the file is empty", field="line 1")
    if resume_at is not None and resume_at.offset > lines.offset:
        stream.seek(resume_at.offset)
        lines.offset, lines.line = resume_at.offset, resume_at.line
    specs_holder: dict[str, FieldSpec] = {}

    def _plan(session: Session) -> ColumnPlan:
        specs_holder.update(field_specs(session, workspace))
        return csv_format.plan_columns(header, explicit=column_map or {}, specs=specs_holder)

    plan = run_batch(_plan)
    report = ImportReport(warnings=list(plan.warnings), place=Place(lines.offset, lines.line))
    first = True
    for batch, place in _batches(reader, lines, batch_size):
        if not first and keep_going is not None and not keep_going():
            report.problems.sort(key=lambda item: item[0])
            return report
        first = False
        done = ImportReport(rows=len(batch), place=place)
        valid: list[ContactRow] = []
        for line, values in batch:
            parsed = csv_format.parse_row(
                line, values, plan, specs=specs_holder, region=workspace.default_region
            )
            if isinstance(parsed, ContactRow):
                valid.append(parsed)
            else:
                done.problems.extend((line, p) for p in parsed)

        def _write(
            session: Session, rows: list[ContactRow] = valid, done: ImportReport = done
        ) -> None:
            outcome = csv_import.write_rows(
                session, workspace=workspace, rows=rows, source=source, now=clock.now()
            )
            done.created, done.updated = outcome.created, outcome.updated
            done.unchanged = outcome.unchanged
            done.problems.extend(outcome.errors)
            done.problems.sort(key=lambda item: item[0])
            if on_batch is not None:
                on_batch(session, done)

        run_batch(_write)
        report.rows += done.rows
        report.created += done.created
        report.updated += done.updated
        report.unchanged += done.unchanged
        report.problems.extend(done.problems)
        report.place = place
        if on_progress is not None:
            on_progress(report.rows)
    report.place, report.finished = Place(lines.offset, lines.line), True
    report.problems.sort(key=lambda item: item[0])
    return report


class _Lines:
    """A text stream's lines, counting the characters and lines the CSV reader has taken
    (it takes exactly the lines of one record at a time, never more)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.offset, self.line = stream, 0, 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        text = self.stream.readline()
        if not text:
            raise StopIteration
        self.offset += len(text)
        self.line += 1
        return text


def _next_row(reader: Iterator[list[str]]) -> list[str] | None:
    try:
        return next(reader)
    except StopIteration:
        return None
    except UnicodeDecodeError as error:
        raise invalid(
            "not_utf8", f"the file is not UTF-8 text ({error.reason})", field="line 1"
        ) from None


def _batches(
    reader: Iterator[list[str]], lines: _Lines, size: int
) -> Iterator[tuple[list[tuple[int, list[str]]], Place]]:
    batch: list[tuple[int, list[str]]] = []
    while True:
        line = lines.line
        try:
            values = next(reader)
        except StopIteration:
            break
        except UnicodeDecodeError as error:
            raise invalid(
                "not_utf8",
                f"the text after line {line} is not UTF-8 ({error.reason})",
                field=f"line {line + 1}",
            ) from None
        except csv.Error as error:
            raise invalid(
                "bad_csv", f"CSV syntax error: {error}", field=f"line {line + 1}"
            ) from None
        if not any(v.strip() for v in values):
            continue
        batch.append((lines.line, values))
        if len(batch) >= size:
            yield batch, Place(lines.offset, lines.line)
            batch = []
    if batch:
        yield batch, Place(lines.offset, lines.line)


def error_report_path(source: Path) -> Path:
    """``contacts.csv`` → ``contacts.errors.csv`` in the same folder."""
    return source.with_name(f"{source.stem}.errors.csv")


def write_error_report(report: ImportReport, path: Path) -> None:
    """Write one line per problem; remove a stale report when the import had none."""
    if not report.problems:
        path.unlink(missing_ok=True)
        return
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(ERROR_COLUMNS)
        for line, problem in report.problems:
            writer.writerow([line, problem.column, problem.value, problem.code, problem.message])
    report.error_file = path


def import_csv_file(
    path: Path,
    *,
    workspace: Workspace,
    run_batch: RunBatch,
    clock: Clock,
    source: str,
    column_map: dict[str, str] | None = None,
    batch_size: int = DEFAULT_BATCH,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a CSV file (UTF-8, with or without BOM) and write its error report beside it.

    Raises:
        TidingsError: for a missing file or a file-level problem.
    """
    if not path.is_file():
        raise invalid("no_such_file", f"{path} does not exist", field="file")
    with path.open("r", encoding="utf-8-sig", newline="") as stream:
        report = import_csv(
            stream,
            workspace=workspace,
            run_batch=run_batch,
            clock=clock,
            source=source,
            column_map=column_map,
            batch_size=batch_size,
            on_progress=on_progress,
        )
    write_error_report(report, error_report_path(path))
    return report


def count_data_lines(path: Path) -> int:
    """A quick estimate of the rows in a file, for progress bars."""
    with path.open("rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)
