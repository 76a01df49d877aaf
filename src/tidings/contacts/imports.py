"""CSV imports in the background (X5): a file is sent, kept (compressed) and answered at once;
the worker reads it batch by batch, each batch and the import's progress committed together.

Why in the background: a file of a few hundred thousand rows takes longer than a client (or
a proxy) waits for an answer, and a request must not run for minutes. Why progress with the
rows: a worker that dies mid-file is followed by another — once the first one's lease has run
out — that resumes at the next unread row, so nothing is skipped and nothing counted twice.
A pass works for at most ``PASS_SECONDS`` and gives the worker back, so its heartbeat,
recovery and other work never wait behind a large file.
"""

from __future__ import annotations

import csv
import io
import logging
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tidings.contacts import jobs
from tidings.contacts.csv_format import plan_columns
from tidings.contacts.jobs import ImportReport, Place
from tidings.contacts.orm import ContactImport
from tidings.contacts.service import field_specs
from tidings.db.session import Database
from tidings.kernel.clock import Clock
from tidings.kernel.errors import TidingsError, invalid, not_found
from tidings.scheduler import service as scheduler
from tidings.workspaces.orm import Workspace

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE = timedelta(seconds=30)  # a claim not renewed for this long is taken over
PASS_SECONDS = 1.0  # work per pass before the worker looks at its other duties
BATCH_ROWS = 500  # a batch holds SQLite's writer ≈ 35 ms: requests wait no longer than that
MAX_PROBLEMS_KEPT = 500


def queue_import(
    session: Session,
    *,
    workspace: Workspace,
    body: bytes,
    column_map: dict[str, str],
    file_name: str | None,
    source: str,
    now: datetime,
) -> ContactImport:
    """Keep a CSV file for the worker to import. The text and its header are checked here,
    so that a file that cannot be read is refused at once rather than failing later.

    Raises:
        TidingsError: 422 for a file that is not UTF-8, is empty, or whose header maps no
            column (naming the line).
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise invalid(
            "not_utf8", f"the body is not UTF-8 text ({error.reason})", field="body"
        ) from None
    header = _header_of(text)
    # Planned here to refuse a header that cannot be read now, not when the worker runs.
    plan = plan_columns(header, explicit=column_map, specs=field_specs(session, workspace))
    job = ContactImport(
        workspace_id=workspace.id,
        status="queued",
        source=source[:64],
        file_name=file_name,
        column_map=column_map,
        body=zlib.compress(text.encode("utf-8"), 6),
        size_bytes=len(body),
        offset=0,
        line=0,
        rows=0,
        created=0,
        updated=0,
        unchanged=0,
        failed=0,
        problems=[],
        warnings=list(plan.warnings),
        created_at=now,
    )
    session.add(job)
    session.flush()
    return job


def _header_of(text: str) -> list[str]:
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), None)
    except csv.Error as error:
        raise invalid("bad_csv", f"CSV syntax error: {error}", field="line 1") from None
    if not header or not any(cell.strip() for cell in header):
        raise invalid("empty_file", "the file is empty", field="line 1")
    return header


def get_import_or_404(session: Session, workspace: Workspace, import_id: int) -> ContactImport:
    found = session.get(ContactImport, import_id)
    if found is None or found.workspace_id != workspace.id:
        raise not_found("import")
    return found


def list_imports(
    session: Session, workspace: Workspace, *, before_id: int | None, limit: int
) -> Sequence[ContactImport]:
    """The workspace's imports, newest first."""
    query = select(ContactImport).where(ContactImport.workspace_id == workspace.id)
    if before_id is not None:
        query = query.where(ContactImport.id < before_id)
    return session.scalars(query.order_by(ContactImport.id.desc()).limit(limit)).all()


# --- the worker's side ----------------------------------------------------------------------


class _ClaimLostError(Exception):
    """Another worker took the import over (this one was too slow to renew its lease)."""


@dataclass(frozen=True)
class _Claimed:
    import_id: int
    workspace: Workspace
    body: bytes
    place: Place
    column_map: dict[str, str]
    source: str


@dataclass
class ContactImportRunner:
    """The worker's source of queued imports (a ``PassSource``: it commits batch by batch)."""

    name: str = "contact_imports"
    batch_rows: int = BATCH_ROWS
    pass_seconds: float = PASS_SECONDS
    claimant: str = field(
        default_factory=lambda: f"{scheduler.worker_identity()[0]}:{uuid.uuid4().hex[:8]}"
    )
    _text: tuple[int, str] | None = None  # the file being read, decompressed once

    def run_pass(self, db: Database, clock: Clock, limit: int) -> int:
        with db.transaction(background=True) as session:
            claimed = self._claim(session, clock.now())
        if claimed is None:
            return 0
        return self._work(db, clock, claimed, limit)

    def _work(self, db: Database, clock: Clock, claimed: _Claimed, limit: int) -> int:
        deadline = time.monotonic() + self.pass_seconds

        def run_batch(work: Callable[[Session], T]) -> T:
            with db.transaction(background=True) as session:
                return work(session)

        def record(session: Session, batch: ImportReport) -> None:
            job = session.get(ContactImport, claimed.import_id, with_for_update=True)
            if job is None or job.claimed_by != self.claimant:
                raise _ClaimLostError
            _add_progress(job, batch)
            job.claimed_until = clock.now() + LEASE

        try:
            report = jobs.import_csv(
                io.StringIO(self._text_of(claimed), newline=""),
                workspace=claimed.workspace,
                run_batch=run_batch,
                clock=clock,
                source=claimed.source,
                column_map=claimed.column_map,
                batch_size=self.batch_rows,
                resume_at=claimed.place,
                keep_going=lambda: time.monotonic() < deadline,
                on_batch=record,
            )
        except _ClaimLostError:
            log.warning("import %s was taken over by another worker", claimed.import_id)
            return 0
        except TidingsError as error:
            self._settle(db, clock, claimed, failure=error)
            return 1
        if report.finished:
            self._settle(db, clock, claimed)
            return 1
        return max(limit, 1)  # more of the file waits: the worker comes back at once

    def _claim(self, session: Session, now: datetime) -> _Claimed | None:
        job = session.scalars(
            select(ContactImport)
            .where(
                ContactImport.status.in_(("queued", "running")),
                or_(
                    ContactImport.claimed_until.is_(None),
                    ContactImport.claimed_until < now,
                    ContactImport.claimed_by == self.claimant,
                ),
            )
            .order_by(ContactImport.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if job is None or job.body is None:
            return None
        if job.claimed_by not in (None, self.claimant):
            log.warning(
                "import %s: resuming after %s stopped at line %s", job.id, job.claimed_by, job.line
            )
        job.status, job.claimed_by = "running", self.claimant
        job.claimed_until = now + LEASE
        job.started_at = job.started_at or now
        workspace = session.get(Workspace, job.workspace_id)
        assert workspace is not None  # the import goes with its workspace (ON DELETE CASCADE)
        session.expunge(workspace)
        return _Claimed(
            job.id,
            workspace,
            job.body,
            Place(job.offset, job.line),
            dict(job.column_map),
            job.source,
        )

    def _text_of(self, claimed: _Claimed) -> str:
        if self._text is None or self._text[0] != claimed.import_id:
            self._text = (claimed.import_id, zlib.decompress(claimed.body).decode("utf-8"))
        return self._text[1]

    def _settle(
        self,
        db: Database,
        clock: Clock,
        claimed: _Claimed,
        *,
        failure: TidingsError | None = None,
    ) -> None:
        with db.transaction(background=True) as session:
            job = session.get(ContactImport, claimed.import_id, with_for_update=True)
            if job is None or job.claimed_by != self.claimant:
                return
            if failure is not None:
                job.status = "failed"
                job.error, job.error_field = failure.message[:1000], (failure.field or "")[:64]
            else:
                job.status = "done"
            job.body, job.claimed_by, job.claimed_until = None, None, None
            job.finished_at = clock.now()
        self._text = None


def _add_progress(job: ContactImport, batch: ImportReport) -> None:
    job.offset, job.line = batch.place.offset, batch.place.line
    job.rows += batch.rows
    job.created += batch.created
    job.updated += batch.updated
    job.unchanged += batch.unchanged
    job.failed += batch.failed
    room = MAX_PROBLEMS_KEPT - len(job.problems)
    if room > 0 and batch.problems:
        job.problems = [*job.problems, *(_problem(line, p) for line, p in batch.problems[:room])]


def _problem(line: int, problem: Any) -> dict[str, Any]:
    return {
        "line": line,
        "column": problem.column,
        "value": problem.value,
        "code": problem.code,
        "message": problem.message,
    }
