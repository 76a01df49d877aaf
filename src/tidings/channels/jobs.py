"""Work the worker runs for channels: turning stored webhook updates into CRM facts.

Each batch claims pending rows of the intake table in its own transaction. An inbound message
finds or creates its contact (by BSUID, then phone), lands in its conversation and on the
contact's timeline once (keyed by its WhatsApp id); the first message of a new contact records
where the lead came from (I6). A status moves its message forward (never back). A row that
fails — or a status that arrives before the send that caused it was recorded — is retried
with backoff; one that cannot be understood, or still fails after ``MAX_ATTEMPTS``, is
quarantined with its reason and raw JSON for an admin to replay, never silently dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tidings.channels import service as channel_service
from tidings.channels.domain import (
    DeliveryStatus,
    InboundMessage,
    StatusUpdate,
    UnreadableUpdateError,
    WebhookBatch,
)
from tidings.channels.inbound import (
    Received,
    record_inbound_message,
    record_inbound_messages,
    sender_keys,
)
from tidings.channels.orm import WhatsAppInboundEvent, WhatsAppWebhookDelivery
from tidings.channels.whatsapp.client import CloudApiClient
from tidings.channels.whatsapp.webhook import parse_webhook
from tidings.kernel.errors import TidingsError
from tidings.kernel.sealing import SecretBox
from tidings.messaging import inbox
from tidings.messaging import service as messaging
from tidings.messaging.domain import INBOUND_MEDIA_LIMIT
from tidings.messaging.media import MediaStore, store_inbound
from tidings.scheduler.domain import retry_delay
from tidings.scheduler.orm import BackgroundJob
from tidings.workspaces import service as workspaces
from tidings.workspaces.orm import Workspace

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 6
BATCH_LIMIT = 25
STATUS_BATCH = 500
SPLIT_LIMIT = 5
RETRY_BASE = timedelta(seconds=5)
RETRY_CAP = timedelta(minutes=10)


@dataclass
class DeliverySplitter:
    """Splits kept webhook POSTs into updates, each filed once. A POST that still cannot be
    split after ``MAX_ATTEMPTS`` passes is quarantined whole (it was signed by Meta, so it is
    looked at and replayed, not thrown away)."""

    name: str = "whatsapp_deliveries"
    batch_limit: int = SPLIT_LIMIT

    def run_batch(self, session: Session, *, now: datetime, limit: int) -> int:
        rows = session.scalars(
            select(WhatsAppWebhookDelivery)
            .where(WhatsAppWebhookDelivery.split_at.is_(None))
            .order_by(WhatsAppWebhookDelivery.id)
            # A POST may carry up to 1,000 updates: a few per transaction keep the write short.
            .limit(min(limit, SPLIT_LIMIT))
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            try:
                with session.begin_nested():
                    channel_service.split_delivery(session, row, now=now)
            except Exception as error:
                log.exception("webhook delivery %s could not be split", row.id)
                row.attempts += 1
                row.last_error = _reason(error)
                if row.attempts >= MAX_ATTEMPTS:
                    _alert("webhook delivery %s quarantined: %s", row.id, row.last_error)
                    channel_service.quarantine_delivery(
                        session, row, reason=row.last_error, now=now
                    )
        return len(rows)


@dataclass(frozen=True, slots=True)
class Pending:
    """An intake row as a batch claims it: what deciding its path needs."""

    id: int
    workspace_id: int
    number_id: int
    kind: str
    payload: dict[str, Any]


@dataclass
class InboundEventSource:
    """Processes stored WhatsApp updates; each row in a savepoint so one failure spares the rest.

    An update that cannot be understood is quarantined at once; one that fails otherwise is
    retried with backoff and quarantined after ``MAX_ATTEMPTS``. A status whose message never
    appears (sent by another tool on the same number) is no failure of ours: it is kept
    processed with the reason.
    """

    name: str = "whatsapp_inbound"
    batch_limit: int = BATCH_LIMIT

    def run_batch(self, session: Session, *, now: datetime, limit: int) -> int:
        # Short transactions: on SQLite each batch holds the one write lock webhooks need. A
        # customer's message costs a dozen statements, a plain status (sent, delivered, read)
        # a share of a few per batch: a batch takes up to ``limit`` of the first kind and up
        # to STATUS_BATCH rows in all.
        limit = min(limit, BATCH_LIMIT)
        pending = WhatsAppInboundEvent
        # Claimed as plain values: most rows of a busy batch are decided from their JSON and
        # written in bulk; only the rows taken one by one are loaded as objects.
        rows = [
            Pending(*row)
            for row in session.execute(
                select(
                    pending.id,
                    pending.workspace_id,
                    pending.number_id,
                    pending.kind,
                    pending.payload,
                )
                .where(
                    pending.processed_at.is_(None),
                    pending.quarantined_at.is_(None),
                    or_(pending.retry_at.is_(None), pending.retry_at <= now),
                )
                .order_by(pending.id)
                .limit(STATUS_BATCH)
                .with_for_update(skip_locked=True)
            )
        ]
        seen: dict[int, Workspace | None] = {}  # one lookup per workspace for the batch
        plain, others = _plain_statuses(session, rows, seen)
        messages, others = _plain_messages(session, others, seen)
        one_by_one = others[:limit]
        handled = len(plain) + len(messages) + len(one_by_one)
        if plain:
            one_by_one += self._apply_together(session, plain, now)
        if messages:
            one_by_one += self._record_together(session, messages, others, seen, now)
        for row in channel_service.inbound_events(session, sorted(r.id for r in one_by_one)):
            self._process_one(session, row, now, seen)
        return handled

    def _record_together(
        self,
        session: Session,
        messages: list[tuple[Pending, InboundMessage]],
        others: list[Pending],
        seen: dict[int, Workspace | None],
        now: datetime,
    ) -> list[Pending]:
        """Record the batch's single-message updates together, per workspace; return the rows
        to take one by one instead (what the batch path leaves, or all when it failed)."""
        # A sender with another update taken one by one in this batch (or a later one) keeps
        # all their messages on that path, in order.
        held_back = frozenset(key for row in others for key in _sender_keys(row))
        by_id = {row.id: row for row, _ in messages}
        left: list[Pending] = []
        by_workspace: dict[int, list[Received]] = {}
        for row, message in messages:
            by_workspace.setdefault(row.workspace_id, []).append(
                Received(row.id, row.number_id, message)
            )
        for workspace_id, received in by_workspace.items():
            workspace = seen[workspace_id]
            assert workspace is not None  # _plain_messages keeps known workspaces only
            try:
                with session.begin_nested():
                    outcome = record_inbound_messages(
                        session,
                        workspace=workspace,
                        received=received,
                        held_back=held_back,
                        now=now,
                    )
            except Exception:
                log.exception("messages recorded together failed; taking them one by one")
                left.extend(by_id[item.key] for item in received)
                continue
            channel_service.mark_processed(session, outcome.done, now=now)
            left.extend(by_id[key] for key in outcome.left)
        return left

    def _apply_together(
        self,
        session: Session,
        plain: list[tuple[Pending, StatusUpdate]],
        now: datetime,
    ) -> list[Pending]:
        """Apply the plain statuses of the batch at once; return the rows to take one by one
        instead: those whose message is not here (retried as ever), or all of them when the
        batch as a whole failed."""
        try:
            with session.begin_nested():
                unknown = messaging.apply_statuses(
                    session, [(row.number_id, status) for row, status in plain], now=now
                )
        except Exception:
            log.exception("statuses applied together failed; taking them one by one")
            return [row for row, _ in plain]
        retry = [row for row, status in plain if (row.number_id, status.message_id) in unknown]
        left = {row.id for row in retry}
        # One statement for the batch, not one per row through the unit of work.
        channel_service.mark_processed(
            session, [row.id for row, _ in plain if row.id not in left], now=now
        )
        return retry

    def _process_one(
        self,
        session: Session,
        row: WhatsAppInboundEvent,
        now: datetime,
        seen: dict[int, Workspace | None],
    ) -> None:
        try:
            with session.begin_nested():
                process_event(session, row, now=now, workspaces_seen=seen)
            row.processed_at, row.last_error = now, None
        except UnreadableUpdateError as error:
            row.attempts += 1
            row.last_error = f"not understood: {error}"[:4000]
            _quarantine(row, now)
        except Exception as error:  # retried, then quarantined or (not ours) given up
            row.attempts += 1
            row.last_error = _reason(error)
            row.retry_at = now + retry_delay(row.attempts, base=RETRY_BASE, cap=RETRY_CAP)
            if isinstance(error, messaging.UnknownMessageError):
                log.info("status for unknown message %s; retrying later", error)
                if row.attempts >= MAX_ATTEMPTS:
                    row.processed_at = now
                return
            log.exception("inbound WhatsApp event %s failed", row.id)
            if row.attempts >= MAX_ATTEMPTS:
                _quarantine(row, now)


PROGRESS = frozenset(
    {DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ, DeliveryStatus.PLAYED}
)


def _plain_statuses(
    session: Session, rows: Sequence[Pending], seen: dict[int, Workspace | None]
) -> tuple[list[tuple[Pending, StatusUpdate]], list[Pending]]:
    """The rows that are one status of progress each (no error, of a known workspace), and
    the others, in order. A message with any other report in the batch has all its reports
    taken one by one, so that they apply in the order they came."""
    plain: list[tuple[Pending, StatusUpdate]] = []
    others: list[Pending] = []
    reported_otherwise: set[tuple[int, str]] = set()
    for row in rows:
        status = _plain_status(session, row, seen)
        if status is None:
            others.append(row)
            if row.kind == "status":  # a message's row reports on no status
                reported_otherwise.update(_status_keys(row))
        else:
            plain.append((row, status))
    kept = []
    for row, status in plain:
        if (row.number_id, status.message_id) in reported_otherwise:
            others.append(row)
        else:
            kept.append((row, status))
    others.sort(key=lambda r: r.id)
    return kept, others


def _plain_status(
    session: Session, row: Pending, seen: dict[int, Workspace | None]
) -> StatusUpdate | None:
    batch = _single(session, row, seen, "status")
    if batch is None or batch.messages or len(batch.statuses) != 1:
        return None
    [status] = batch.statuses
    return status if status.status in PROGRESS and not status.errors else None


def _single(
    session: Session, row: Pending, seen: dict[int, Workspace | None], kind: str
) -> WebhookBatch | None:
    """A row of this kind, of a known workspace, parsed; None for any other (kept as text,
    of a deleted workspace, unreadable): those go one by one."""
    if row.kind != kind or channel_service.RAW_TEXT in row.payload:
        return None
    if row.workspace_id not in seen:
        seen[row.workspace_id] = workspaces.get_workspace(session, row.workspace_id)
    if seen[row.workspace_id] is None:
        return None
    try:
        return parse_webhook(row.payload)
    except (TidingsError, UnreadableUpdateError):
        return None


def _plain_messages(
    session: Session, rows: Sequence[Pending], seen: dict[int, Workspace | None]
) -> tuple[list[tuple[Pending, InboundMessage]], list[Pending]]:
    """The rows that are one customer message each (of a known workspace), and the others."""
    plain: list[tuple[Pending, InboundMessage]] = []
    others: list[Pending] = []
    for row in rows:
        message = _plain_message(session, row, seen)
        if message is None:
            others.append(row)
        else:
            plain.append((row, message))
    return plain, others


def _plain_message(
    session: Session, row: Pending, seen: dict[int, Workspace | None]
) -> InboundMessage | None:
    batch = _single(session, row, seen, "message")
    if batch is None or batch.statuses or len(batch.messages) != 1:
        return None
    return batch.messages[0]


def _sender_keys(row: Pending) -> set[str]:
    """The keys of the senders of a row's messages, as far as its JSON says."""
    try:
        batch = parse_webhook(row.payload)
    except (TidingsError, UnreadableUpdateError):
        return set()
    return {key for message in batch.messages for key in sender_keys(message)}


def _status_keys(row: Pending) -> set[tuple[int, str]]:
    """The messages a row reports on, as far as its JSON says (a row that does not parse
    says nothing)."""
    try:
        batch = parse_webhook(row.payload)
    except (TidingsError, UnreadableUpdateError):
        return set()
    return {(row.number_id, status.message_id) for status in batch.statuses}


def _quarantine(row: WhatsAppInboundEvent, now: datetime) -> None:
    row.quarantined_at, row.retry_at = now, None
    _alert("WhatsApp update %s (%s) quarantined: %s", row.id, row.event_key, row.last_error)


def _alert(message: str, *args: Any) -> None:
    """Logged at ERROR, where operators' alerting looks; ``/health`` counts the quarantine."""
    log.error(message, *args)


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:4000]


def process_event(
    session: Session,
    row: WhatsAppInboundEvent,
    *,
    now: datetime,
    workspaces_seen: dict[int, Workspace | None] | None = None,
) -> None:
    """Apply one stored update: a message to its conversation, a status to its message; an
    update kept as text (a POST that could not be split, an update that could not be stored)
    is filed again from its text.

    Raises:
        UnreadableUpdateError: the update cannot be understood (it is quarantined).
    """
    seen = workspaces_seen if workspaces_seen is not None else {}
    if row.workspace_id not in seen:
        seen[row.workspace_id] = workspaces.get_workspace(session, row.workspace_id)
    workspace = seen[row.workspace_id]
    if workspace is None:
        return
    if channel_service.RAW_TEXT in row.payload:
        _file_again(session, row, now)
        return
    try:
        batch = parse_webhook(row.payload)
    except TidingsError as error:
        raise UnreadableUpdateError("entry", error.message) from None
    for message in batch.messages:
        record_inbound_message(
            session, workspace=workspace, message=message, number_id=row.number_id, now=now
        )
    for status in batch.statuses:
        messaging.apply_status(session, number_id=row.number_id, update=status, now=now)


def _file_again(session: Session, row: WhatsAppInboundEvent, now: datetime) -> None:
    try:
        payload = json.loads(str(row.payload[channel_service.RAW_TEXT]))
    except ValueError as error:
        raise UnreadableUpdateError("body", f"not JSON: {error}") from None
    try:
        _, unstorable = channel_service.file_updates(
            session,
            workspace_id=row.workspace_id,
            number_id=row.number_id,
            received_at=row.received_at,
            payload=payload,
            now=now,
        )
    except TidingsError as error:
        raise UnreadableUpdateError("entry", error.message) from None
    if row.event_key in unstorable:
        raise UnreadableUpdateError("update", "it still cannot be stored")


@dataclass
class MediaDownloader:
    """Fetches a customer's file through the media endpoint and keeps it (I5); a failed
    download is retried by the job queue and ends ``dead`` with its error, never silently."""

    box: SecretBox
    client: CloudApiClient
    store: MediaStore

    def handle(self, session: Session, job: BackgroundJob, now: datetime) -> None:
        payload = job.payload
        workspace = workspaces.get_workspace(session, int(job.workspace_id or 0))
        endpoint = channel_service.endpoints_for(
            session, [int(payload["number_id"])], self.box
        ).get(int(payload["number_id"]))
        if workspace is None or endpoint is None:
            return  # the workspace or number is gone; nothing left to attach the file to
        data, mime_type = self.client.download_media(endpoint, str(payload["media_id"]))
        if len(data) > INBOUND_MEDIA_LIMIT:
            raise ValueError(f"the file is {len(data)} bytes, over WhatsApp's 100 MB")
        stored = store_inbound(
            self.store,
            workspace.id,
            data,
            mime_type or str(payload.get("mime_type") or ""),
            compress_over=workspaces.policy_for(workspace).image_compress_over_bytes,
        )
        inbox.attach_media(
            session, message_id=int(payload["message_id"]), stored=asdict(stored), now=now
        )
