"""The outgoing pipeline's use cases. Runs inside the caller's transaction; never commits.

``queue_message`` is the one way anything is sent to a contact: it checks the content,
applies the rules that can be decided now (opt-out, the 24-hour window P1), and writes the
message — which is also its outbox row — with an idempotency key and a trace, in the caller's
transaction. The dispatcher (``tidings.messaging.dispatch``) sends it after the commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from tidings.channels import service as channels
from tidings.channels.domain import StatusUpdate
from tidings.channels.whatsapp.errors import classify_whatsapp_error
from tidings.contacts import service as contacts
from tidings.messaging import inbox, repository
from tidings.messaging.domain import (
    GiveUp,
    MessageStatus,
    Origin,
    Purpose,
    after_failure,
    check_idempotency_key,
    check_outbound_content,
    is_window_open,
    needs_open_window,
    next_outbound_status,
    summary_of,
    window_closed,
)
from tidings.messaging.orm import Conversation, Message, SendTrace
from tidings.workspaces import service as workspaces
from tidings.workspaces.orm import Workspace

UNCERTAIN_AFTER = timedelta(minutes=5)


def resend_by_default(purpose: Purpose) -> bool:
    """Whether an uncertain message is sent again: a missed receipt or code is worse than a
    duplicate; a duplicated promotion is worse than a missed one (architecture guide)."""
    return purpose != Purpose.MARKETING


def trace(
    session: Session,
    message: Message,
    *,
    outcome: str,
    reason: str,
    now: datetime,
    provider_code: int | None = None,
) -> None:
    session.add(
        SendTrace(
            workspace_id=message.workspace_id,
            message_id=message.id,
            contact_id=message.contact_id,
            outcome=outcome,
            reason=reason[:500],
            provider_code=provider_code,
            at=now,
        )
    )


@dataclass(frozen=True)
class SendRequest:
    """What a caller asks the pipeline to send; ``content`` mirrors the Cloud API object."""

    contact_id: int
    content: Mapping[str, Any]
    origin: Origin
    purpose: Purpose = Purpose.SERVICE
    number_id: int | None = None
    author_id: int | None = None
    idempotency_key: str | None = None
    resend_if_uncertain: bool | None = None
    # An agent is told at once that the window is closed; automation gets a skipped message.
    reject_closed_window: bool = False


def queue_message(
    session: Session, *, workspace: Workspace, request: SendRequest, now: datetime
) -> Message:
    """Queue one message for sending; returns its row (existing for a repeated key).

    Raises:
        TidingsError: malformed content (422 naming the field), unknown contact or number
            (404/422), a closed window when ``reject_closed_window`` (409).
    """
    key = check_idempotency_key(request.idempotency_key)
    if key is not None:
        existing = repository.message_by_idempotency_key(session, workspace, key)
        if existing is not None:
            return existing
    content = check_outbound_content(request.content)
    contact = contacts.get_contact_or_404(session, workspace, request.contact_id)
    conversation = _conversation_for(session, workspace, request, now)
    policy = workspaces.policy_for(workspace)
    recipient = _recipient(session, workspace, contact.id, contact.phone)
    skip_reason = None
    if contact.do_not_contact:
        skip_reason = "P5: the contact is marked do-not-contact"
    elif recipient is None:
        skip_reason = "the contact has no WhatsApp number or id"
    elif needs_open_window(content["type"]) and not is_window_open(
        conversation.last_inbound_at, now, timedelta(hours=policy.service_window_hours)
    ):
        if request.reject_closed_window:
            raise window_closed()
        skip_reason = "P1: the 24-hour window is closed and this is not a template"
    resend = (
        request.resend_if_uncertain
        if request.resend_if_uncertain is not None
        else resend_by_default(request.purpose)
    )
    values = {
        "kind": content["type"],
        "text": summary_of(content),
        "content": content,
        "status": MessageStatus.SKIPPED.value if skip_reason else MessageStatus.QUEUED.value,
        "status_reason": skip_reason,
        "reply_to": (content.get("context") or {}).get("message_id"),
        "origin": request.origin.value,
        "purpose": request.purpose.value,
        "author_id": request.author_id,
        "idempotency_key": key,
        "recipient": recipient,
        "resend_if_uncertain": resend,
        "next_attempt_at": None if skip_reason else now,
    }
    message = inbox.add_outbound(session, conversation=conversation, values=values, now=now)
    if skip_reason:
        trace(session, message, outcome="skipped", reason=skip_reason, now=now)
    else:
        trace(session, message, outcome="queued", reason=f"queued by {request.origin}", now=now)
    if request.origin == Origin.AGENT:
        inbox.note_human_reply(
            conversation, pause=timedelta(hours=policy.human_reply_pause_hours), now=now
        )
    return message


def _conversation_for(
    session: Session, workspace: Workspace, request: SendRequest, now: datetime
) -> Conversation:
    if request.number_id is not None:
        number_id = channels.get_active_number(session, workspace, request.number_id).id
    else:
        latest = repository.latest_conversation_of_contact(session, workspace, request.contact_id)
        number_id = (
            latest.number_id
            if latest is not None
            else channels.default_number(session, workspace).id
        )
    return inbox.ensure_conversation(
        session,
        workspace_id=workspace.id,
        number_id=number_id,
        contact_id=request.contact_id,
        now=now,
    )


def _recipient(
    session: Session, workspace: Workspace, contact_id: int, phone: str | None
) -> str | None:
    """Where WhatsApp delivers: the E.164 phone, else the WhatsApp id the contact wrote from."""
    if phone:
        return phone
    return contacts.external_ids(session, workspace, contact_id).get("whatsapp")


def queue_reply(
    session: Session,
    *,
    workspace: Workspace,
    conversation_id: int,
    content: Mapping[str, Any],
    author_id: int | None,
    origin: Origin,
    idempotency_key: str | None,
    now: datetime,
) -> Message:
    """An agent's (or the API's) reply in a conversation, on that conversation's number."""
    conversation = inbox.get_conversation_or_404(session, workspace, conversation_id)
    return queue_message(
        session,
        workspace=workspace,
        request=SendRequest(
            contact_id=conversation.contact_id,
            content=content,
            origin=origin,
            number_id=conversation.number_id,
            author_id=author_id,
            idempotency_key=idempotency_key,
            reject_closed_window=True,
        ),
        now=now,
    )


def traces_of(session: Session, workspace: Workspace, message_id: int) -> list[SendTrace]:
    message = inbox.get_message_or_404(session, workspace, message_id)
    return list(repository.traces_of(session, message))


# --- What the provider says afterwards -----------------------------------------------------


STATUS_TIMES = {
    MessageStatus.SENT: "sent_at",
    MessageStatus.DELIVERED: "delivered_at",
    MessageStatus.READ: "read_at",
    MessageStatus.PLAYED: "read_at",
    MessageStatus.FAILED: "failed_at",
}


class UnknownMessageError(LookupError):
    """A status for a message id we have not recorded (yet): the intake retries it later."""


def apply_status(session: Session, *, number_id: int, update: StatusUpdate, now: datetime) -> bool:
    """Apply a delivery report to the message it is about; False when nothing changed.

    Never moves a message backwards (a late ``delivered`` after ``read`` changes nothing). A
    ``failed`` report with a transient code puts the message back in the queue while retries
    remain (X3); a permanent one keeps the provider's code, title and details.

    Raises:
        UnknownMessageError: no message of this number has that id.
    """
    message = repository.message_by_provider_id(session, number_id, update.message_id)
    if message is None:
        raise UnknownMessageError(update.message_id)
    reported = (
        MessageStatus(update.status.value)
        if update.status.value in {s.value for s in STATUS_TIMES}
        else None
    )
    if reported is None:
        return False
    current = MessageStatus(message.status)
    at = min(update.at, now) if update.at is not None else now
    if reported == MessageStatus.FAILED and update.errors:
        error = update.errors[0]
        failure = classify_whatsapp_error(error.code, http_status=None)
        if next_outbound_status(current, reported) is None:
            return False
        workspace = workspaces.get_workspace(session, message.workspace_id)
        retries = workspaces.policy_for(workspace).message_retries if workspace else 0
        plan = after_failure(
            failure,
            attempts=message.attempts,
            max_retries=retries,
            now=now,
            jitter_seed=message.id,
        )
        keep_error(message, error.code, error.title, error.details or error.message)
        if not isinstance(plan, GiveUp):
            message.status = MessageStatus.QUEUED.value
            message.next_attempt_at = plan.at
            message.status_reason = plan.reason
            message.updated_at = now
            trace(
                session,
                message,
                outcome="retry",
                reason=plan.reason,
                now=now,
                provider_code=error.code,
            )
            return True
        fail_message(session, message, reason=plan.reason, now=now, code=error.code)
        message.failed_at = at
        return True
    changed = next_outbound_status(current, reported)
    if changed is None:
        # Still record when it happened: a late "delivered" after "read" fills delivered_at.
        column = STATUS_TIMES.get(reported)
        if column and getattr(message, column) is None and reported != MessageStatus.FAILED:
            setattr(message, column, at)
        return False
    message.status = changed.value
    for earlier, column in STATUS_TIMES.items():
        if earlier == MessageStatus.FAILED:
            continue
        if (
            PROGRESS_ORDER.index(earlier) <= PROGRESS_ORDER.index(changed)
            and getattr(message, column) is None
        ):
            setattr(message, column, at)
    if changed == MessageStatus.FAILED:
        message.failed_at = at
        keep_error(message, None, "failed without an error code", "")
    message.updated_at = now
    trace(session, message, outcome=changed.value, reason=f"WhatsApp reported {changed}", now=now)
    return True


PROGRESS_ORDER = [
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.READ,
    MessageStatus.PLAYED,
]


def keep_error(message: Message, code: int | None, title: str, details: str) -> None:
    message.error_code = code
    message.error_title = title[:300]
    message.error_details = details[:2000] or None


def fail_message(
    session: Session, message: Message, *, reason: str, now: datetime, code: int | None
) -> None:
    message.status = MessageStatus.FAILED.value
    message.status_reason = reason[:300]
    message.next_attempt_at = None
    message.failed_at = now
    message.updated_at = now
    trace(session, message, outcome="failed", reason=reason, now=now, provider_code=code)


def recover_in_flight(session: Session, *, now: datetime, limit: int = 1000) -> int:
    """Messages left ``sending`` by a worker that died mid-request become ``uncertain``; those
    whose kind is resent (transactional) go back to the queue, the others wait for a person.
    """
    rows = repository.stale_in_flight(session, older_than=now - UNCERTAIN_AFTER, limit=limit)
    for message in rows:
        message.updated_at = now
        if message.resend_if_uncertain:
            message.status = MessageStatus.QUEUED.value
            message.next_attempt_at = now
            message.status_reason = "uncertain: the worker stopped mid-send; resending"
            trace(session, message, outcome="uncertain", reason=message.status_reason, now=now)
        else:
            message.status = MessageStatus.UNCERTAIN.value
            message.next_attempt_at = None
            message.status_reason = "uncertain: the worker stopped mid-send; not resent"
            trace(session, message, outcome="uncertain", reason=message.status_reason, now=now)
    return len(rows)
