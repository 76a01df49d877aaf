"""The outgoing pipeline's use cases. Runs inside the caller's transaction; never commits.

``queue_message`` is the one way anything is sent to a contact: it checks the content,
applies the rules that can be decided now (opt-out, the 24-hour window P1), and writes the
message — which is also its outbox row — with an idempotency key and a trace, in the caller's
transaction. The dispatcher (``tidings.messaging.dispatch``) sends it after the commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from tidings.channels import service as channels
from tidings.channels.domain import StatusUpdate
from tidings.channels.whatsapp.errors import classify_whatsapp_error
from tidings.contacts import service as contacts
from tidings.contacts.domain import Channel, ConsentPurpose, ConsentStatus
from tidings.db.base import bulk_insert, bulk_update, table_of
from tidings.kernel.errors import invalid, not_found
from tidings.messaging import activity, costs, inbox, registry, repository
from tidings.messaging.domain import (
    GiveUp,
    MessageStatus,
    Origin,
    Purpose,
    UncertainDecision,
    after_failure,
    check_idempotency_key,
    check_outbound_content,
    next_outbound_status,
    summary_of,
    window_closed,
)
from tidings.messaging.orm import Conversation, Message, SendTrace
from tidings.messaging.policy import (
    Decision,
    Defer,
    Outgoing,
    PastSend,
    Recipient,
    Send,
    Skip,
    content_digest,
    decide_send,
    history_horizon,
    is_keyword,
    opt_in_confirmation,
    opt_out_confirmation,
)
from tidings.webhooks import service as webhooks
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import WorkspacePolicy
from tidings.workspaces.orm import Workspace

UNCERTAIN_AFTER = timedelta(minutes=5)
OPT_OUT_CONFIRMATION = "opt_out_confirmation"  # the one message an opted-out contact gets
OPT_IN_CONFIRMATION = "opt_in_confirmation"
CHANNEL = "whatsapp"  # the outbox holds WhatsApp messages; e-mail brings its own channel


def resend_by_default(purpose: Purpose) -> bool:
    """Whether an uncertain message is sent again: a missed receipt or code is worse than a
    duplicate; a duplicated promotion is worse than a missed one (architecture guide)."""
    return purpose != Purpose.MARKETING


@dataclass
class Gathered:
    """What reports applied together leave to be written at once: their traces, and their
    webhook announcements by workspace."""

    traces: list[dict[str, Any]] = field(default_factory=list)
    announced: dict[int, list[webhooks.Announcement]] = field(
        default_factory=lambda: defaultdict(list)
    )


def trace(
    session: Session,
    message: Message,
    *,
    outcome: str,
    reason: str,
    now: datetime,
    provider_code: int | None = None,
    into: Gathered | None = None,
) -> None:
    row = {
        "workspace_id": message.workspace_id,
        "message_id": message.id,
        "contact_id": message.contact_id,
        "outcome": outcome,
        "reason": reason[:500],
        "provider_code": provider_code,
        "at": now,
    }
    if into is not None:
        into.traces.append(row)
    else:
        session.add(SendTrace(**row))


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
    # Service notifications of one type are spaced out (P4): "parcel_update", "payment" …
    notification_type: str | None = None


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
    # The registry checks a template against the number's approved ones (name, status,
    # parameter counts); a marketing template is sent as marketing whatever was asked.
    purpose = registry.check_template_message(
        session, number_id=conversation.number_id, content=content, purpose=request.purpose
    )
    policy = workspaces.policy_for(workspace)
    recipient = _recipient(session, workspace, contact.id, contact.phone)
    values = {
        "kind": content["type"],
        "text": summary_of(content),
        "content": content,
        "status": MessageStatus.QUEUED.value,
        "reply_to": (content.get("context") or {}).get("message_id"),
        "origin": request.origin.value,
        "purpose": purpose.value,
        "author_id": request.author_id,
        "idempotency_key": key,
        "recipient": recipient,
        "resend_if_uncertain": (
            request.resend_if_uncertain
            if request.resend_if_uncertain is not None
            else resend_by_default(purpose)
        ),
        "content_digest": content_digest(content),
        "notification_type": request.notification_type,
        "next_attempt_at": now,
    }
    if recipient is None:
        decision: Decision = Skip("the contact has no WhatsApp number or id")
    else:
        facts = PolicyFacts.load(session, [contact.id], since=now - history_horizon(policy))
        decision = facts.decide(
            outgoing_of(Message(**values)),
            contact.id,
            last_inbound_at=conversation.last_inbound_at,
            policy=policy,
            default_timezone=workspace.timezone,
            now=now,
        )
    if (
        isinstance(decision, Skip)
        and request.reject_closed_window
        and decision.reason.startswith("P1")
    ):
        raise window_closed()
    message = inbox.add_outbound(session, conversation=conversation, values=values, now=now)
    settle(session, message, decision, now=now, queued_reason=f"queued by {request.origin}")
    if request.origin == Origin.AGENT:
        inbox.note_human_reply(
            conversation, pause=timedelta(hours=policy.human_reply_pause_hours), now=now
        )
    return message


@dataclass
class PolicyFacts:
    """What the sending policy needs about many contacts, loaded in a few queries; the
    dispatcher adds each message it hands out so the rest of its batch sees it."""

    contacts: dict[int, contacts.SendingFacts]
    pauses: dict[int, datetime]
    history: dict[int, list[PastSend]]

    @classmethod
    def load(cls, session: Session, contact_ids: list[int], *, since: datetime) -> PolicyFacts:
        sent = repository.dispatched_since(session, contact_ids, since)
        return cls(
            contacts=contacts.sending_facts(session, contact_ids),
            pauses=repository.automation_pauses(session, contact_ids),
            history={
                contact_id: [_past(m) for m in rows if m.dispatched_at is not None]
                for contact_id, rows in sent.items()
            },
        )

    def decide(
        self,
        outgoing: Outgoing,
        contact_id: int,
        *,
        last_inbound_at: datetime | None,
        policy: WorkspacePolicy,
        default_timezone: str,
        now: datetime,
    ) -> Decision:
        facts = self.contacts.get(contact_id)
        if facts is None:
            return Skip("the contact was deleted")
        recipient = Recipient(
            do_not_contact=facts.do_not_contact,
            consents=facts.consents,
            timezone=facts.timezone or default_timezone,
            last_inbound_at=last_inbound_at,
            automation_paused_until=self.pauses.get(contact_id),
        )
        return decide_send(outgoing, recipient, self.history.get(contact_id, []), policy, now)

    def dispatched(self, message: Message, at: datetime) -> None:
        self.history.setdefault(message.contact_id, []).append(replace(_past(message), at=at))

    def planned(self, contact_id: int, outgoing: Outgoing, at: datetime) -> None:
        """A message just decided for ``at``: later decisions in the same batch count it."""
        self.history.setdefault(contact_id, []).append(
            PastSend(
                at=at,
                channel=outgoing.channel,
                purpose=outgoing.purpose,
                is_template=outgoing.is_template,
                content_digest=outgoing.content_digest,
                notification_type=outgoing.notification_type,
            )
        )


def last_inbound_of_contacts(session: Session, contact_ids: list[int]) -> dict[int, datetime]:
    """When each contact last wrote to us (the start of its P1 window)."""
    return repository.last_inbound_of_contacts(session, contact_ids)


def announce(
    session: Session,
    message: Message,
    event_type: str,
    *,
    now: datetime,
    into: Gathered | None = None,
) -> None:
    """Tell the workspace's webhook subscribers about a message's progress (X1):
    ``message.sent`` when the provider took it, ``message.status`` for each later state.
    With ``into``, the announcement (the message as it is now) is gathered there, for the
    caller to publish many at once."""
    announcement = announcement_of(message, event_type, now=now)
    if into is not None:
        into.announced[message.workspace_id].append(announcement)
        return
    webhooks.publish(
        session,
        workspace_id=message.workspace_id,
        event_type=announcement.event_type,
        event_id=announcement.event_id,
        occurred_at=announcement.occurred_at,
        data=announcement.data,
        now=now,
    )


def announcement_of(message: Message, event_type: str, *, now: datetime) -> webhooks.Announcement:
    return webhooks.Announcement(
        event_type=event_type,
        event_id=f"msg_{message.id}_{message.status}",
        occurred_at=now,
        data={
            "message": {
                "id": message.id,
                "contact_id": message.contact_id,
                "conversation_id": message.conversation_id,
                "channel": message.channel,
                "kind": message.kind,
                "text": message.text,
                "status": message.status,
                "origin": message.origin,
                "purpose": message.purpose,
                "broadcast_id": message.broadcast_id,
                "provider_message_id": message.provider_message_id,
                "error_code": message.error_code,
                "error_title": message.error_title,
                "sent_at": _iso_or_none(message.sent_at),
                "delivered_at": _iso_or_none(message.delivered_at),
                "read_at": _iso_or_none(message.read_at),
                "failed_at": _iso_or_none(message.failed_at),
            }
        },
    )


def _iso_or_none(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(frozen=True)
class ChatLine:
    """One message of a conversation's history, for copying it elsewhere (a CRM's notes)."""

    id: int
    contact_id: int
    direction: str
    kind: str
    text: str | None
    at: datetime


def chat_lines_after(
    session: Session, workspace: Workspace, *, after_id: int, contact_ids: list[int], limit: int
) -> list[ChatLine]:
    """These contacts' messages with ids above ``after_id``, oldest first (the ones that went
    out, or came in; queued and failed ones are not history)."""
    return [
        ChatLine(m.id, m.contact_id, m.direction, m.kind, m.text, m.sent_at or m.created_at)
        for m in repository.messages_after(
            session, workspace.id, after_id=after_id, contact_ids=contact_ids, limit=limit
        )
    ]


def latest_message_id(session: Session, workspace: Workspace) -> int:
    return repository.latest_message_id(session, workspace.id)


@dataclass(frozen=True)
class MessageMoments:
    """Where an outgoing message stands, for automation's conditions and statistics."""

    status: str
    sent_at: datetime  # handed to the provider (or queued, if not yet)
    dispatched: bool
    delivered_at: datetime | None
    read_at: datetime | None


def last_messages_query(workspace_id: int) -> Any:
    """The per-contact message times a compiled condition reads (``contacts.Sources``)."""
    return repository.last_messages_query(workspace_id)


def last_messages_of_contacts(
    session: Session, contact_ids: list[int]
) -> dict[int, tuple[datetime | None, datetime | None]]:
    """``(last inbound, last outbound)`` of each contact that has a conversation."""
    return repository.last_messages_of_contacts(session, contact_ids)


def message_moments(session: Session, message_ids: list[int]) -> dict[int, MessageMoments]:
    """By message id (ids the caller's own rows hold, e.g. a sequence's step runs)."""
    return {
        row.id: MessageMoments(
            row.status,
            row.dispatched_at or row.created_at,
            row.dispatched_at is not None,
            row.delivered_at,
            row.read_at,
        )
        for row in repository.message_moments(session, message_ids)
    }


def outgoing_of(message: Message) -> Outgoing:
    return Outgoing(
        channel=message.channel or CHANNEL,
        purpose=Purpose(message.purpose or Purpose.SERVICE.value),
        origin=Origin(message.origin or Origin.API.value),
        is_template=message.kind == "template",
        content_digest=message.content_digest or content_digest(message.content),
        notification_type=message.notification_type,
        confirms_opt_out=message.notification_type == OPT_OUT_CONFIRMATION,
    )


def _past(message: Any) -> PastSend:
    """A message (row or plain row of the same columns) as the policy's history sees it."""
    automated = message.origin != Origin.AGENT.value
    return PastSend(
        at=message.dispatched_at or message.updated_at,
        channel=message.channel or CHANNEL,
        purpose=Purpose(message.purpose or Purpose.SERVICE.value),
        is_template=message.kind == "template",
        # An agent's words are a conversation, not a campaign: they do not count for P3.
        content_digest=message.content_digest if automated else None,
        notification_type=message.notification_type,
    )


def settle(
    session: Session, message: Message, decision: Decision, *, now: datetime, queued_reason: str
) -> bool:
    """Put the policy's decision on the message, with a trace; True when it may go now."""
    message.updated_at = now
    if isinstance(decision, Send):
        if message.status == MessageStatus.DEFERRED.value:
            message.status = MessageStatus.QUEUED.value
            message.status_reason = None
        if message.next_attempt_at is None or message.next_attempt_at > now:
            message.next_attempt_at = now
        if queued_reason:
            trace(session, message, outcome="queued", reason=queued_reason, now=now)
        return True
    if isinstance(decision, Defer):
        message.status = MessageStatus.DEFERRED.value
        message.next_attempt_at = decision.until
        message.status_reason = decision.reason[:300]
        trace(
            session,
            message,
            outcome="deferred",
            reason=f"{decision.reason} (until {decision.until.isoformat()})",
            now=now,
        )
        return False
    message.status = MessageStatus.SKIPPED.value
    message.next_attempt_at = None
    message.status_reason = decision.reason[:300]
    trace(session, message, outcome="skipped", reason=decision.reason, now=now)
    return False


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
    """Where WhatsApp delivers: the E.164 phone, else the WhatsApp id the contact wrote from,
    else its BSUID (a user known only by their username writes with no phone at all)."""
    if phone:
        return phone
    known = contacts.external_ids(session, workspace, contact_id)
    return known.get("whatsapp") or known.get("whatsapp_bsuid")


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


def honour_keywords(
    session: Session,
    *,
    workspace: Workspace,
    contact_id: int,
    number_id: int,
    text: str | None,
    message_id: str,
    now: datetime,
) -> bool:
    """A customer wrote an opt-out or opt-in keyword (P5). Opt-out: out of WhatsApp at once
    for every purpose — queued and deferred messages are then skipped by the dispatcher — and
    one confirmation. Opt-in: consent for both purposes, recorded with its source and time,
    and a confirmation. True when the message was such a request."""
    policy = workspaces.policy_for(workspace)
    opting_out = is_keyword(text, policy.opt_out_keywords)
    if not opting_out and not is_keyword(text, policy.opt_in_keywords):
        return False
    contact = contacts.get_contact_or_404(session, workspace, contact_id)
    locale = contact.locale or workspace.locale
    if opting_out:
        contacts.opt_out(
            session,
            workspace=workspace,
            contact=contact,
            channel=Channel.WHATSAPP,
            source="whatsapp_keyword",
            now=now,
        )
        body, kind = opt_out_confirmation(locale), OPT_OUT_CONFIRMATION
    else:
        for purpose in ConsentPurpose:
            contacts.set_consent(
                session,
                workspace=workspace,
                contact=contact,
                channel=Channel.WHATSAPP,
                purpose=purpose,
                status=ConsentStatus.OPTED_IN,
                source="whatsapp_keyword",
                now=now,
            )
        body, kind = opt_in_confirmation(locale), OPT_IN_CONFIRMATION
    # A second STOP (or START) soon after the first gets no second confirmation: the first
    # one answered it, and a copy held back by P4 would arrive hours later, at night.
    window = timedelta(hours=policy.service_same_event_gap_hours)
    if repository.has_recent_notification(
        session, contact_id=contact_id, notification_type=kind, since=now - window
    ):
        return True
    queue_message(
        session,
        workspace=workspace,
        request=SendRequest(
            contact_id=contact_id,
            content={"type": "text", "text": {"body": body}},
            origin=Origin.SYSTEM,
            purpose=Purpose.SERVICE,
            number_id=number_id,
            idempotency_key=f"keyword:{message_id}",
            notification_type=kind,
        ),
        now=now,
    )
    return True


def traces_of_contact(
    session: Session, workspace: Workspace, contact_id: int, *, limit: int
) -> list[SendTrace]:
    contact = contacts.get_contact_or_404(session, workspace, contact_id)
    return list(repository.traces_of_contact(session, workspace, contact.id, limit=limit))


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
    if update.pricing_category or update.pricing_type:
        message.pricing_category = update.pricing_category or message.pricing_category
        message.pricing_type = update.pricing_type or message.pricing_type
    changed = _apply_reported(session, message, update, now)
    return _charge_if_delivered(session, message) or changed


def apply_statuses(
    session: Session, updates: Sequence[tuple[int, StatusUpdate]], *, now: datetime
) -> set[tuple[int, str]]:
    """:func:`apply_status` for many reports at once, in order, each by the same rule: the
    messages found in one query per number, their contacts' countries in one, announcements
    published per workspace in one statement, and every change written in one flush.
    Returns the ``(number_id, message_id)`` of reports whose message is not here (the caller
    handles them one by one, as :func:`apply_status` would refuse them)."""
    unknown: set[tuple[int, str]] = set()
    gathered = Gathered()
    with session.no_autoflush:
        found = repository.messages_by_provider_ids(
            session, {(number_id, update.message_id) for number_id, update in updates}
        )
        places = contacts.countries(session, {m.contact_id for m in found.values()})
        policies: dict[int, WorkspacePolicy] = {}
        for number_id, update in updates:
            message = found.get((number_id, update.message_id))
            if message is None:
                unknown.add((number_id, update.message_id))
                continue
            if update.pricing_category or update.pricing_type:
                message.pricing_category = update.pricing_category or message.pricing_category
                message.pricing_type = update.pricing_type or message.pricing_type
            _apply_reported(session, message, update, now, into=gathered)
            _charge_if_delivered(session, message, country_of=places, policies=policies)
        _write_states(session, list(found.values()))
    bulk_insert(session, table_of(SendTrace), gathered.traces)
    for workspace_id, events in gathered.announced.items():
        webhooks.publish_many(session, workspace_id=workspace_id, events=events, now=now)
    return unknown


def _write_states(session: Session, messages: list[Message]) -> None:
    """Write what changed on these messages in one statement (PostgreSQL) or one
    ``executemany`` (SQLite), instead of the unit of work's statement per message; the
    messages leave the session, whose copies would be stale."""
    changed = [m for m in messages if inspect(m).committed_state]
    if not changed:
        return
    columns = sorted({name for m in changed for name in inspect(m).committed_state})
    bulk_update(
        session,
        table_of(Message),
        [{"id": m.id, **{name: getattr(m, name) for name in columns}} for m in changed],
    )
    for message in changed:
        session.expunge(message)


CHARGED_STATUSES = frozenset(
    {MessageStatus.DELIVERED.value, MessageStatus.READ.value, MessageStatus.PLAYED.value}
)


def _charge_if_delivered(
    session: Session,
    message: Message,
    *,
    country_of: Mapping[int, str | None] | None = None,
    policies: dict[int, WorkspacePolicy] | None = None,
) -> bool:
    """Per-message pricing (P9): a message costs something once delivered, at the rate of
    the category WhatsApp applied and the recipient's country (looked up unless given in
    ``country_of``); free types cost 0. ``policies`` keeps each workspace's rate card for
    the next message of a batch."""
    if message.cost is not None or message.status not in CHARGED_STATUSES:
        return False
    category: str | None
    if message.pricing_type is None and message.kind != "template":
        category, pricing_type = "service", "free_customer_service"
    elif message.pricing_type is None:
        return False  # the pricing comes with a later report
    else:
        category, pricing_type = message.pricing_category, message.pricing_type
    policies = {} if policies is None else policies
    policy = policies.get(message.workspace_id)
    if policy is None:
        workspace = workspaces.get_workspace(session, message.workspace_id)
        policy = workspaces.policy_for(workspace) if workspace else WorkspacePolicy()
        policies[message.workspace_id] = policy
    if country_of is None or message.contact_id not in country_of:
        country_of = contacts.countries(session, [message.contact_id])
    country = country_of.get(message.contact_id)
    message.cost = costs.charge(
        policy, country=country, pricing_type=pricing_type, category=category
    )
    message.cost_currency = policy.price_currency
    return True


def _apply_reported(
    session: Session,
    message: Message,
    update: StatusUpdate,
    now: datetime,
    *,
    into: Gathered | None = None,
) -> bool:
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
                into=into,
            )
            return True
        fail_message(session, message, reason=plan.reason, now=now, code=error.code, into=into)
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
        # A failure fills no progress time (it used to raise here, for a "failed" report
        # without an error: the update was retried, then quarantined).
        if earlier == MessageStatus.FAILED or changed not in PROGRESS_ORDER:
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
    trace(
        session,
        message,
        outcome=changed.value,
        reason=f"WhatsApp reported {changed}",
        now=now,
        into=into,
    )
    announce(session, message, "message.status", now=now, into=into)
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
    session: Session,
    message: Message,
    *,
    reason: str,
    now: datetime,
    code: int | None,
    into: Gathered | None = None,
) -> None:
    message.status = MessageStatus.FAILED.value
    message.status_reason = reason[:300]
    message.next_attempt_at = None
    message.failed_at = now
    message.updated_at = now
    trace(session, message, outcome="failed", reason=reason, now=now, provider_code=code, into=into)
    announce(session, message, "message.status", now=now, into=into)


def _provider(message: Message) -> str:
    return "mail server" if message.channel == "email" else "WhatsApp"


def recover_in_flight(
    session: Session,
    *,
    now: datetime,
    live_workers: Sequence[str] | None = None,
    limit: int = 1000,
) -> int:
    """Messages left ``sending`` by a worker that died — its lease ran out (it is not among
    ``live_workers``) — or, for sends no worker claimed by name, untouched for
    ``UNCERTAIN_AFTER``: those whose request never left (no wire mark) go back to the queue;
    those the provider accepted (its id was kept) are accepted; the rest were in flight and
    become ``uncertain`` — those whose kind is resent (transactional) go back to the queue,
    the others wait for a person.
    """
    rows = repository.stale_in_flight(
        session, older_than=now - UNCERTAIN_AFTER, live_workers=live_workers, limit=limit
    )
    for message in rows:
        message.updated_at = now
        message.claimed_by = None
        if message.provider_message_id is not None:
            # A mail server's 250 is the last word an e-mail gets before it is opened.
            email = message.channel == "email"
            message.status = (MessageStatus.SENT if email else MessageStatus.ACCEPTED).value
            message.sent_at = message.sent_at or (now if email else None)
            message.status_reason = None
            message.next_attempt_at = None
            trace(
                session,
                message,
                outcome="accepted",
                reason=f"accepted by the {_provider(message)} (recorded after the worker stopped)",
                now=now,
            )
        elif message.wire_at is None:
            message.status = MessageStatus.QUEUED.value
            message.next_attempt_at = now
            message.attempts = max(0, message.attempts - 1)  # this attempt never happened
            message.status_reason = "the worker stopped before sending it; sending now"
            trace(session, message, outcome="retry", reason=message.status_reason, now=now)
        elif message.resend_if_uncertain:
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


@dataclass(frozen=True)
class CostReport:
    """What WhatsApp messages cost in a period (P9): by category, per conversation that cost
    anything, and per customer acquired (first order) in the period (R4)."""

    currency: str
    total: float
    by_category: dict[str, dict[str, float]]
    paid_conversations: int
    cost_per_conversation: float | None
    customers_acquired: int
    cost_per_acquisition: float | None


def cost_report(
    session: Session, workspace: Workspace, *, since: datetime, until: datetime
) -> CostReport:
    """Raises ``TidingsError`` (422 on ``since``) for an empty or reversed period."""
    _period(since, until)
    rows = repository.cost_by_category(session, workspace, since, until)
    total = round(sum(r[2] for r in rows), 6)
    conversations = repository.paid_conversations(session, workspace, since, until)
    acquired = contacts.customers_acquired(session, workspace, since=since, until=until)
    return CostReport(
        currency=workspaces.policy_for(workspace).price_currency,
        total=total,
        by_category={
            category or "unknown": {"messages": n, "cost": round(cost, 6)}
            for category, n, cost in rows
        },
        paid_conversations=conversations,
        cost_per_conversation=round(total / conversations, 6) if conversations else None,
        customers_acquired=acquired,
        cost_per_acquisition=round(total / acquired, 6) if acquired else None,
    )


@dataclass(frozen=True)
class ActivityReport:
    """When customers wrote in a period (R1): ``grid[weekday][hour]`` in the workspace's
    time, Monday first; and how many messages went each way."""

    timezone: str
    grid: list[list[int]]
    inbound: int
    outbound: int


def _period(since: datetime, until: datetime) -> None:
    if since >= until:
        raise invalid("invalid_period", "since must be before until", field="since")


def activity_report(
    session: Session, workspace: Workspace, *, since: datetime, until: datetime
) -> ActivityReport:
    """Raises ``TidingsError`` (422 on ``since``) for an empty or reversed period."""
    _period(since, until)
    rows = repository.conversation_messages_between(session, workspace, since, until)
    inbound = [row.created_at for row in rows if row.direction == "in"]
    return ActivityReport(
        timezone=workspace.timezone,
        grid=activity.activity_grid(inbound, workspace.timezone),
        inbound=len(inbound),
        outbound=len(rows) - len(inbound),
    )


@dataclass(frozen=True)
class ResponseReport:
    """How fast agents answered in a period (R1): each agent, the slowest first, judged
    against the 3-minute target and the workspace's ``slow_response_seconds``."""

    target_seconds: int
    slow_after_seconds: int
    agents: list[activity.AgentResponses]


def response_report(
    session: Session, workspace: Workspace, *, since: datetime, until: datetime
) -> ResponseReport:
    """Raises ``TidingsError`` (422 on ``since``) for an empty or reversed period."""
    _period(since, until)
    slow_after = workspaces.policy_for(workspace).slow_response_seconds
    rows = repository.conversation_messages_between(session, workspace, since, until)
    agents = activity.agent_responses(
        (
            activity.ThreadMessage(
                row.conversation_id, row.created_at, row.direction == "in", row.author_id
            )
            for row in rows
        ),
        slow_after_seconds=slow_after,
    )
    return ResponseReport(activity.TARGET_SECONDS, slow_after, agents)


MAX_DECISIONS = 1000


def list_uncertain(
    session: Session, workspace: Workspace, *, after_id: int | None = None, limit: int = 50
) -> Sequence[Message]:
    """Messages that may or may not have reached the customer, oldest first (X3)."""
    return repository.uncertain_messages(session, workspace, after_id=after_id, limit=limit)


def count_uncertain(session: Session, workspace: Workspace) -> int:
    return repository.count_uncertain(session, workspace)


def decide_uncertain(
    session: Session,
    workspace: Workspace,
    *,
    ids: Sequence[int] | None,
    decision: UncertainDecision,
    decided_by: str,
    now: datetime,
) -> list[int]:
    """Settle uncertain messages as a person decided — the given ones, or all when ``ids`` is
    None — recording who decided what on each message's trace; returns the ids settled.

    Raises:
        TidingsError: 422 on ``ids`` for an empty or over-long list, 404 when none of the
            given ids is an uncertain message of this workspace.
    """
    if ids is not None:
        if not ids:
            raise invalid("required", "name at least one message, or all", field="ids")
        if len(ids) > MAX_DECISIONS:
            raise invalid("too_many", f"at most {MAX_DECISIONS} at a time", field="ids")
    rows = repository.uncertain_for_update(session, workspace, ids, limit=MAX_DECISIONS)
    if ids is not None and not rows:
        raise not_found("uncertain message")
    for message in rows:
        message.updated_at = now
        if decision == UncertainDecision.SENT:
            message.status = MessageStatus.SENT.value
            message.sent_at = message.sent_at or message.wire_at or now
            message.status_reason = f"marked as sent by {decided_by}"[:300]
            trace(session, message, outcome="decided_sent", reason=message.status_reason, now=now)
        else:
            message.status = MessageStatus.QUEUED.value
            message.next_attempt_at = now
            message.status_reason = f"sent again on the decision of {decided_by}"[:300]
            trace(session, message, outcome="decided_resend", reason=message.status_reason, now=now)
    return [message.id for message in rows]
