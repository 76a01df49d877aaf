"""The e-mail side of the outbox: queueing an e-mail through the sending policy (and the
bounce list), and what comes back for it — opens, clicks and unsubscribes.

E-mails are rows of ``messages`` (channel ``email``), so this lives with the outbox; sender
identities, templates and the bounce list belong to ``tidings.mailing``.
Every function runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tidings.contacts import service as contacts
from tidings.contacts.domain import Channel
from tidings.kernel.errors import invalid, not_found
from tidings.mailing import service as mailing
from tidings.mailing.domain import TokenClaims, machine_signal, render_email
from tidings.messaging.domain import MessageStatus, Origin, Purpose, next_outbound_status
from tidings.messaging.orm import Message
from tidings.messaging.policy import Decision, Outgoing, Skip, content_digest, history_horizon
from tidings.messaging.service import PolicyFacts, settle, trace
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import WorkspacePolicy
from tidings.workspaces.orm import Workspace

# --- queueing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailRequest:
    contact_id: int
    subject: str
    html: str
    text: str | None = None
    purpose: Purpose = Purpose.MARKETING
    origin: Origin = Origin.API
    sender_id: int | None = None
    idempotency_key: str | None = None


def queue_email(
    session: Session, *, workspace: Workspace, request: EmailRequest, now: datetime
) -> tuple[Message, bool]:
    """Render, decide (the sending policy, P1–P7, and the bounce list) and queue one e-mail;
    ``(message, created)`` — an idempotency key already used returns the first message.

    Raises:
        TidingsError: 404 for an unknown contact, 422 for a template that will not render or
        a workspace with no sender.
    """
    if request.idempotency_key:
        known = session.scalar(
            select(Message).where(
                Message.workspace_id == workspace.id,
                Message.idempotency_key == request.idempotency_key,
            )
        )
        if known is not None:
            return known, False
    contact = contacts.get_contact_or_404(session, workspace, request.contact_id)
    sender_id = mailing.sending_sender_id(
        session, workspace_id=workspace.id, sender_id=request.sender_id
    )
    if sender_id is None:
        field = "sender_id" if request.sender_id is not None else None
        raise invalid("no_sender", "set up an e-mail sender first (SMTP settings)", field=field)
    rendered = render_email(
        subject=request.subject,
        html=request.html,
        text=request.text,
        variables=mailing.variables_for(session, workspace, contact.id),
    )
    content = rendered.content()
    digest = content_digest(content)
    message = Message(
        workspace_id=workspace.id,
        channel="email",
        contact_id=contact.id,
        sender_id=sender_id,
        direction="out",
        kind="email",
        text=rendered.subject,
        content=content,
        status=MessageStatus.QUEUED.value,
        origin=request.origin.value,
        purpose=request.purpose.value,
        idempotency_key=request.idempotency_key,
        recipient=contact.email,
        resend_if_uncertain=request.purpose != Purpose.MARKETING,
        content_digest=digest,
        next_attempt_at=now,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    session.flush()
    policy = workspaces.policy_for(workspace)
    decision = decide_email(
        session,
        message,
        address=contact.email,
        facts=PolicyFacts.load(session, [contact.id], since=now - history_horizon(policy)),
        suppressed=mailing.suppressed(session, workspace.id, [contact.email or ""]),
        default_timezone=workspace.timezone,
        now=now,
    )
    settle(session, message, decision, now=now, queued_reason=f"queued by {request.origin}")
    return message, True


def decide_email(
    session: Session,
    message: Message,
    *,
    address: str | None,
    facts: PolicyFacts,
    suppressed: Mapping[str, str],
    default_timezone: str,
    now: datetime,
) -> Decision:
    """The policy for one e-mail, after what only e-mail has: an address, and no bounce."""
    if not address:
        return Skip("the contact has no e-mail address")
    bounced = suppressed.get(address.lower())
    if bounced is not None:
        return Skip(f"the address is undeliverable: {bounced}")
    workspace = workspaces.get_workspace(session, message.workspace_id)
    policy = workspaces.policy_for(workspace) if workspace else WorkspacePolicy()
    return facts.decide(
        Outgoing(
            channel="email",
            purpose=Purpose(message.purpose or Purpose.MARKETING.value),
            origin=Origin(message.origin or Origin.API.value),
            is_template=False,
            content_digest=message.content_digest or content_digest(message.content),
        ),
        message.contact_id,
        last_inbound_at=None,
        policy=policy,
        default_timezone=default_timezone,
        now=now,
    )


# --- what comes back: opens, clicks, unsubscribes -----------------------------------------------


@dataclass(frozen=True)
class Fetch:
    """How a tracking URL was fetched: what tells a person from a machine."""

    method: str
    user_agent: str | None
    ip: str | None


def _tracked_message(session: Session, claims: TokenClaims) -> Message | None:
    message = session.get(Message, claims.message_id)
    if message is None or message.channel != "email":
        return None
    return message


def tracked_message_exists(session: Session, claims: TokenClaims) -> bool:
    return _tracked_message(session, claims) is not None


def record_open(session: Session, *, claims: TokenClaims, fetch: Fetch, now: datetime) -> bool:
    """An open pixel fetched: ``email.opened`` on the contact's timeline, flagged when it was
    probably a machine's, and the message read (the first open). False: nothing recorded
    (unknown message, or tracking turned off for the workspace)."""
    message, workspace = _tracking_target(session, claims)
    if message is None or workspace is None:
        return False
    signal = _signal(workspace, message, fetch, now)
    _log(session, workspace, message, "email.opened", fetch, signal, now, {})
    if message.read_at is None:
        message.read_at = now
        forward = next_outbound_status(MessageStatus(message.status), MessageStatus.READ)
        if forward is not None:
            message.status = forward.value
        message.updated_at = now
    return True


def record_click(
    session: Session, *, claims: TokenClaims, fetch: Fetch, now: datetime
) -> str | None:
    """A tracked link followed: the address to send the visitor on to (None: unknown token),
    and — tracking on — ``link.clicked`` with the URL on the contact's timeline."""
    message = _tracked_message(session, claims)
    if message is None:
        return None
    links = list((message.content.get("email") or {}).get("links") or [])
    if not 0 <= claims.link < len(links):
        return None
    url = str(links[claims.link])
    message, workspace = _tracking_target(session, claims)
    if message is not None and workspace is not None:
        signal = _signal(workspace, message, fetch, now)
        _log(session, workspace, message, "link.clicked", fetch, signal, now, {"url": url})
    return url


def _tracking_target(
    session: Session, claims: TokenClaims
) -> tuple[Message | None, Workspace | None]:
    message = _tracked_message(session, claims)
    if message is None:
        return None, None
    workspace = workspaces.get_workspace(session, message.workspace_id)
    if workspace is None or not workspaces.policy_for(workspace).email_tracking:
        return None, None
    return message, workspace


def _signal(workspace: Workspace, message: Message, fetch: Fetch, now: datetime) -> str | None:
    sent = message.sent_at or message.dispatched_at
    return machine_signal(
        method=fetch.method,
        user_agent=fetch.user_agent,
        seconds_after_send=(now - sent).total_seconds() if sent else None,
        within=workspaces.policy_for(workspace).email_machine_seconds,
    )


def _log(
    session: Session,
    workspace: Workspace,
    message: Message,
    event_type: str,
    fetch: Fetch,
    signal: str | None,
    now: datetime,
    extra: dict[str, Any],
) -> None:
    step = (message.content.get("email") or {}).get("step") or {}
    contacts.log_event(
        session,
        workspace,
        message.contact_id,
        event_type,
        now,
        {
            "message_id": message.id,
            **({"sequence_id": step["sequence_id"], "step": step["step_id"]} if step else {}),
            **extra,
            "machine": signal is not None,
            **({"machine_reason": signal} if signal else {}),
            "method": fetch.method,
            "user_agent": (fetch.user_agent or "")[:300],
            **({"ip": fetch.ip} if fetch.ip else {}),
        },
        "email",
    )


def unsubscribe(session: Session, *, claims: TokenClaims, how: str, now: datetime) -> bool:
    """Opt the message's contact out of e-mail at once (P5), with the timeline entry, and skip
    every e-mail still waiting for them (their sequence e-mail steps end there). False for an
    unknown message. Idempotent: a second click changes nothing more."""
    message = _tracked_message(session, claims)
    if message is None:
        return False
    workspace = workspaces.get_workspace(session, message.workspace_id)
    if workspace is None:
        return False
    contact = contacts.get_contact_or_404(session, workspace, message.contact_id)
    contacts.opt_out(
        session,
        workspace=workspace,
        contact=contact,
        channel=Channel.EMAIL,
        source=f"email unsubscribe ({how})",
        now=now,
    )
    contacts.log_event(
        session,
        workspace,
        contact.id,
        "email.unsubscribed",
        now,
        {"message_id": message.id, "how": how},
        "email",
    )
    skip_waiting_emails(
        session,
        workspace_id=workspace.id,
        contact_id=contact.id,
        reason="P5: the contact unsubscribed from e-mail",
        now=now,
    )
    return True


def skip_waiting_emails(
    session: Session, *, workspace_id: int, contact_id: int, reason: str, now: datetime
) -> int:
    waiting = session.scalars(
        select(Message).where(
            Message.workspace_id == workspace_id,
            Message.contact_id == contact_id,
            Message.channel == "email",
            Message.status.in_((MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value)),
        )
    ).all()
    for message in waiting:
        message.status = MessageStatus.SKIPPED.value
        message.status_reason = reason[:300]
        message.next_attempt_at = None
        message.updated_at = now
        trace(session, message, outcome="skipped", reason=reason, now=now)
    return len(waiting)


def email_message_or_404(session: Session, workspace: Workspace, message_id: int) -> Message:
    message = session.scalar(
        select(Message).where(
            Message.workspace_id == workspace.id,
            Message.id == message_id,
            Message.channel == "email",
        )
    )
    if message is None:
        raise not_found("e-mail")
    return message
