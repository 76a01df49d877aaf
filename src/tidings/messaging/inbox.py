"""Use cases of the inbox (I1–I4). Runs inside the caller's transaction; never commits.

Inbound messages arrive here from the channel worker; outbound ones are written by the
outgoing pipeline (``tidings.messaging``), which owns their dispatch. Agents list, read,
assign, label, annotate and resolve conversations through these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from tidings.channels.domain import InboundMessage
from tidings.contacts import service as contacts
from tidings.db.base import allocate_ids, bulk_insert, bulk_update, insert_new, table_of
from tidings.kernel.errors import conflict, invalid, not_found
from tidings.kernel.templating import check_template, render_template
from tidings.messaging import repository
from tidings.messaging.domain import (
    ConversationStatus,
    InboxState,
    after_inbound,
    automation_pause_until,
    check_label,
    check_shortcut,
    check_snooze,
)
from tidings.messaging.orm import (
    Conversation,
    ConversationLabel,
    ConversationNote,
    Message,
    QuickReply,
)
from tidings.messaging.repository import ConversationFilter
from tidings.workspaces import service as workspaces
from tidings.workspaces.orm import Workspace

__all__ = ["ConversationFilter"]


def ensure_conversation(
    session: Session, *, workspace_id: int, number_id: int, contact_id: int, now: datetime
) -> Conversation:
    """The conversation of this contact with this number, created on first contact (I2)."""
    found = repository.find_conversation(session, workspace_id, number_id, contact_id)
    if found is not None:
        return found
    # ON CONFLICT: two workers receiving the same new customer at once create one conversation.
    insert_new(
        session,
        table_of(Conversation),
        [
            {
                "workspace_id": workspace_id,
                "number_id": number_id,
                "contact_id": contact_id,
                "status": ConversationStatus.OPEN.value,
                "unread_count": 0,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    created = repository.find_conversation(session, workspace_id, number_id, contact_id)
    assert created is not None  # just inserted, or inserted by a concurrent worker
    return created


def record_inbound(
    session: Session,
    *,
    workspace: Workspace,
    number_id: int,
    contact_id: int,
    message: InboundMessage,
    content: Mapping[str, Any],
    now: datetime,
) -> Message | None:
    """Put a customer's message in its conversation once; None when it was already there.

    The conversation's window clock (P1) moves to the message's time, never backwards, and
    a resolved or snoozed conversation reopens.
    """
    if repository.message_by_provider_id(session, number_id, message.message_id) is not None:
        return None
    conversation = ensure_conversation(
        session, workspace_id=workspace.id, number_id=number_id, contact_id=contact_id, now=now
    )
    sent_at = min(message.sent_at, now) if message.sent_at is not None else now
    row = Message(
        workspace_id=workspace.id,
        conversation_id=conversation.id,
        contact_id=contact_id,
        number_id=number_id,
        direction="in",
        kind=message.kind.value,
        text=message.text,
        content=dict(content),
        status="received",
        provider_message_id=message.message_id,
        reply_to=message.reply_to or message.reaction_to,
        attempts=0,
        created_at=sent_at,
        updated_at=now,
    )
    session.add(row)
    _note_inbound(conversation, sent_at, now)
    session.flush()
    return row


@dataclass(frozen=True)
class Arrival:
    """A customer's message for :func:`record_inbound_many`: which number got it, from whom."""

    number_id: int
    contact_id: int
    message: InboundMessage


def record_inbound_many(
    session: Session, *, workspace: Workspace, arrivals: Sequence[Arrival], now: datetime
) -> list[tuple[Arrival, int]]:
    """:func:`record_inbound` for many messages at once, with the same outcome as taking them
    in order one by one: each message stored once, its conversation created on first contact,
    the window clock moved forward, unread counted, a resolved or snoozed conversation
    reopened. A few statements per batch: the stored ids in one query per number, the
    conversations in one (held for update on PostgreSQL), the messages in one insert, the
    conversations' changes in one flush. Returns the arrivals stored now with their ids."""
    present = repository.provider_ids_present(
        session, [(a.number_id, a.message.message_id) for a in arrivals]
    )
    fresh: list[Arrival] = []
    for arrival in arrivals:
        key = (arrival.number_id, arrival.message.message_id)
        if key not in present:
            present.add(key)  # a second copy in the same batch is the same message
            fresh.append(arrival)
    if not fresh:
        return []
    workspace_id = workspace.id
    pairs = {(a.number_id, a.contact_id) for a in fresh}
    postgres = session.get_bind().dialect.name == "postgresql"
    conversations = repository.inbox_states(session, workspace_id, pairs, lock=postgres)
    missing = sorted(pairs - set(conversations))
    # A new conversation is inserted with its state after the batch, under an id reserved
    # now. Another worker creating it at this very moment makes the insert fail: the caller
    # then takes the messages one by one, which find that conversation.
    opened = dict(
        zip(missing, allocate_ids(session, table_of(Conversation), len(missing)), strict=True)
    )
    for pair, conversation_id in opened.items():
        conversations[pair] = (
            conversation_id,
            InboxState(ConversationStatus.OPEN.value, 0, None, None, None),
        )
    table = table_of(Message)
    ids = allocate_ids(session, table, len(fresh))
    rows = []
    for arrival, message_id in zip(fresh, ids, strict=True):
        message = arrival.message
        conversation_id, state = conversations[arrival.number_id, arrival.contact_id]
        sent_at = min(message.sent_at, now) if message.sent_at is not None else now
        rows.append(
            {
                "id": message_id,
                "workspace_id": workspace_id,
                "channel": "whatsapp",
                "conversation_id": conversation_id,
                "contact_id": arrival.contact_id,
                "number_id": arrival.number_id,
                "direction": "in",
                "kind": message.kind.value,
                "text": message.text,
                "content": dict(message.raw),
                "status": "received",
                "provider_message_id": message.message_id,
                "reply_to": message.reply_to or message.reaction_to,
                "resend_if_uncertain": False,
                "attempts": 0,
                "created_at": sent_at,
                "updated_at": now,
            }
        )
        conversations[arrival.number_id, arrival.contact_id] = (
            conversation_id,
            after_inbound(state, sent_at),
        )
    new_ids = set(opened.values())
    bulk_insert(
        session,
        table_of(Conversation),
        [
            {
                "id": conversation_id,
                "workspace_id": workspace_id,
                "number_id": number_id,
                "contact_id": contact_id,
                **_inbox_values(state),
                "created_at": now,
                "updated_at": now,
            }
            for (number_id, contact_id), (conversation_id, state) in conversations.items()
            if conversation_id in new_ids
        ],
    )
    bulk_insert(session, table, rows)
    bulk_update(
        session,
        table_of(Conversation),
        [
            {"id": conversation_id, **_inbox_values(state), "updated_at": now}
            for conversation_id, state in conversations.values()
            if conversation_id not in new_ids
        ],
    )
    return list(zip(fresh, ids, strict=True))


def _inbox_values(state: InboxState) -> dict[str, Any]:
    return {
        "status": state.status,
        "unread_count": state.unread_count,
        "last_inbound_at": state.last_inbound_at,
        "last_message_at": state.last_message_at,
        "snoozed_until": state.snoozed_until,
    }


def _note_inbound(conversation: Conversation, sent_at: datetime, now: datetime) -> None:
    """What one customer message does to its conversation (as :func:`record_inbound_many`)."""
    state = after_inbound(
        InboxState(
            status=conversation.status,
            unread_count=conversation.unread_count,
            last_inbound_at=conversation.last_inbound_at,
            last_message_at=conversation.last_message_at,
            snoozed_until=conversation.snoozed_until,
        ),
        sent_at,
    )
    for name, value in _inbox_values(state).items():
        setattr(conversation, name, value)
    conversation.updated_at = now


def _touch(conversation: Conversation, at: datetime) -> None:
    if conversation.last_message_at is None or at > conversation.last_message_at:
        conversation.last_message_at = at


def add_outbound(
    session: Session, *, conversation: Conversation, values: Mapping[str, Any], now: datetime
) -> Message:
    """Write an outbound message (and outbox row) into ``conversation``; for the pipeline."""
    row = Message(
        workspace_id=conversation.workspace_id,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        number_id=conversation.number_id,
        direction="out",
        attempts=0,
        created_at=now,
        updated_at=now,
        **values,
    )
    session.add(row)
    _touch(conversation, now)
    conversation.updated_at = now
    session.flush()
    return row


def note_human_reply(conversation: Conversation, *, pause: timedelta, now: datetime) -> None:
    """An agent answered: pause automation for the contact (I3) and count it as handled."""
    conversation.last_human_reply_at = now
    conversation.automation_paused_until = automation_pause_until(now, pause)
    conversation.unread_count = 0


def automation_paused_until(
    session: Session, workspace: Workspace, contact_id: int
) -> datetime | None:
    """Until when automation must leave this contact alone after a human reply (I3)."""
    return repository.automation_paused_until(session, workspace, contact_id)


def notify_team(
    session: Session,
    *,
    workspace: Workspace,
    number_id: int,
    contact_id: int,
    message: str,
    agent_email: str | None,
    due: datetime | None,
    author_label: str,
    now: datetime,
) -> Conversation:
    """Tell the team about a contact: a note on the conversation; assigned to the agent when
    one is named (or kept with its assignee), and with a due time the conversation is snoozed
    until then so that it comes back to the inbox as a follow-up task."""
    conversation = ensure_conversation(
        session, workspace_id=workspace.id, number_id=number_id, contact_id=contact_id, now=now
    )
    suffix = f" — follow up by {due:%Y-%m-%d %H:%M} UTC" if due else ""
    add_note(
        session,
        workspace=workspace,
        conversation_id=conversation.id,
        body=f"{message}{suffix}",
        author_id=None,
        author_label=author_label,
        now=now,
    )
    if agent_email:
        agent = workspaces.find_user_by_email(session, workspace, agent_email)
        if agent is not None:
            assign(
                session,
                workspace=workspace,
                conversation_id=conversation.id,
                changes={"assignee_id": agent.id},
                now=now,
            )
    if due is not None and due > now:
        set_status(
            session,
            workspace=workspace,
            conversation_id=conversation.id,
            status="snoozed",
            snoozed_until=due,
            now=now,
        )
    return conversation


def last_inbound_at(session: Session, workspace: Workspace, contact_id: int) -> datetime | None:
    """The contact's last message to any of our numbers: the start of the P1 window."""
    return repository.last_inbound_of_contact(session, workspace, contact_id)


# --- Reading the inbox ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationView:
    conversation: Conversation
    labels: list[str]
    contact_name: str | None = None
    contact_phone: str | None = None


def list_conversations(
    session: Session,
    workspace: Workspace,
    criteria: ConversationFilter,
    *,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[ConversationView]:
    if criteria.status is not None:
        _check_status(criteria.status)
    rows = repository.list_conversations(session, workspace, criteria, after=after, limit=limit)
    labels = repository.labels_of(session, [row.id for row in rows])
    people = contacts.profiles(session, [row.contact_id for row in rows])
    return [_view(row, labels.get(row.id, []), people.get(row.contact_id)) for row in rows]


def _view(
    conversation: Conversation, labels: list[str], person: contacts.Profile | None
) -> ConversationView:
    return ConversationView(
        conversation,
        labels,
        contact_name=person.name if person else None,
        contact_phone=person.phone if person else None,
    )


def change_mark(session: Session, workspace_id: int) -> str:
    """A value that changes whenever anything an inbox shows changes in the workspace: a
    message in or out, a delivery tick, an assignment, a label or status. Two index look-ups."""
    return repository.change_mark(session, workspace_id)


def get_conversation_or_404(
    session: Session, workspace: Workspace, conversation_id: int
) -> Conversation:
    conversation = repository.get_conversation(session, workspace, conversation_id)
    if conversation is None:
        raise not_found("conversation")
    return conversation


def describe(session: Session, conversation: Conversation) -> ConversationView:
    labels = repository.labels_of(session, [conversation.id]).get(conversation.id, [])
    person = contacts.profiles(session, [conversation.contact_id]).get(conversation.contact_id)
    return _view(conversation, labels, person)


def thread(
    session: Session,
    workspace: Workspace,
    conversation_id: int,
    *,
    before_id: int | None,
    limit: int,
) -> Sequence[Message]:
    conversation = get_conversation_or_404(session, workspace, conversation_id)
    return repository.thread(session, conversation, before_id=before_id, limit=limit)


def get_message_or_404(session: Session, workspace: Workspace, message_id: int) -> Message:
    message = repository.get_message(session, workspace, message_id)
    if message is None:
        raise not_found("message")
    return message


# --- Agents working the inbox --------------------------------------------------------------


def _check_status(value: str) -> ConversationStatus:
    try:
        return ConversationStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in ConversationStatus)
        raise invalid("invalid_status", f"status is one of {allowed}", field="status") from None


def set_status(
    session: Session,
    *,
    workspace: Workspace,
    conversation_id: int,
    status: str,
    snoozed_until: datetime | None = None,
    now: datetime,
) -> Conversation:
    """Open, park (pending), resolve or snooze a conversation."""
    conversation = get_conversation_or_404(session, workspace, conversation_id)
    chosen = _check_status(status)
    if chosen == ConversationStatus.SNOOZED:
        conversation.snoozed_until = check_snooze(snoozed_until, now)
    else:
        conversation.snoozed_until = None
    if chosen == ConversationStatus.RESOLVED:
        conversation.unread_count = 0
        if conversation.status != chosen.value:
            contacts.log_event(
                session,
                workspace,
                conversation.contact_id,
                "conversation.resolved",
                now,
                {"conversation_id": conversation.id, "assignee_id": conversation.assignee_id},
                "inbox",
            )
    conversation.status = chosen.value
    conversation.updated_at = now
    session.flush()
    return conversation


def assign(
    session: Session,
    *,
    workspace: Workspace,
    conversation_id: int,
    changes: Mapping[str, int | None],
    now: datetime,
) -> Conversation:
    """Set the assignee agent and/or team; ``None`` clears one, an absent key keeps it."""
    conversation = get_conversation_or_404(session, workspace, conversation_id)
    before = (conversation.assignee_id, conversation.team_id)
    if "assignee_id" in changes:
        assignee_id = changes["assignee_id"]
        if assignee_id is not None:
            user = workspaces.get_user_or_404(session, workspace, assignee_id)
            if not user.is_active:
                raise invalid("inactive_user", "that agent is deactivated", field="assignee_id")
        conversation.assignee_id = assignee_id
    if "team_id" in changes:
        team_id = changes["team_id"]
        if team_id is not None:
            workspaces.get_team_or_404(session, workspace, team_id)
        conversation.team_id = team_id
    if (conversation.assignee_id, conversation.team_id) != before:
        contacts.log_event(
            session,
            workspace,
            conversation.contact_id,
            "conversation.assigned",
            now,
            {
                "conversation_id": conversation.id,
                "assignee_id": conversation.assignee_id,
                "team_id": conversation.team_id,
                "previous_assignee_id": before[0],
                "previous_team_id": before[1],
            },
            "inbox",
        )
    conversation.updated_at = now
    session.flush()
    return conversation


def assign_replying_agent(
    session: Session, *, workspace: Workspace, conversation_id: int, user_id: int, now: datetime
) -> None:
    """An agent's reply takes a conversation nobody is assigned to (when the workspace's
    policy says so, as by default): the others see it is being answered."""
    if not workspaces.policy_for(workspace).reply_assigns_agent:
        return
    conversation = get_conversation_or_404(session, workspace, conversation_id)
    if conversation.assignee_id is None:
        assign(
            session,
            workspace=workspace,
            conversation_id=conversation_id,
            changes={"assignee_id": user_id},
            now=now,
        )


def mark_seen(
    session: Session, *, workspace: Workspace, conversation_id: int, now: datetime
) -> Conversation:
    conversation = get_conversation_or_404(session, workspace, conversation_id)
    conversation.unread_count = 0
    conversation.updated_at = now
    session.flush()
    return conversation


def wake_snoozed(session: Session, *, now: datetime, limit: int = 1000) -> int:
    """Reopen conversations whose snooze ended; the worker runs this every minute."""
    rows = repository.due_snoozed(session, now=now, limit=limit)
    for conversation in rows:
        conversation.status = ConversationStatus.OPEN.value
        conversation.snoozed_until = None
        conversation.updated_at = now
    return len(rows)


def add_note(
    session: Session,
    *,
    workspace: Workspace,
    conversation_id: int,
    body: str,
    author_id: int | None,
    author_label: str,
    now: datetime,
) -> ConversationNote:
    conversation = get_conversation_or_404(session, workspace, conversation_id)
    text = body.strip()
    if not text or len(text) > 10_000:
        raise invalid("required", "a note has 1-10,000 characters", field="body")
    note = ConversationNote(
        workspace_id=workspace.id,
        conversation_id=conversation.id,
        author_id=author_id,
        author_label=author_label,
        body=text,
        created_at=now,
    )
    session.add(note)
    session.flush()
    return note


def notes(
    session: Session, workspace: Workspace, conversation_id: int
) -> Sequence[ConversationNote]:
    return repository.notes_of(
        session, get_conversation_or_404(session, workspace, conversation_id)
    )


def add_labels(
    session: Session,
    *,
    workspace: Workspace,
    conversation_id: int,
    labels: Sequence[str],
    now: datetime,
) -> ConversationView:
    conversation = get_conversation_or_404(session, workspace, conversation_id)
    cleaned = sorted({check_label(label) for label in labels})
    insert_new(
        session,
        table_of(ConversationLabel),
        [
            {"workspace_id": workspace.id, "conversation_id": conversation.id, "label": label}
            for label in cleaned
        ],
    )
    conversation.updated_at = now
    session.flush()
    return describe(session, conversation)


def remove_label(
    session: Session, *, workspace: Workspace, conversation_id: int, label: str, now: datetime
) -> ConversationView:
    conversation = get_conversation_or_404(session, workspace, conversation_id)
    found = repository.find_label(session, conversation, check_label(label))
    if found is None:
        raise not_found("label", field="label")
    session.delete(found)
    conversation.updated_at = now
    session.flush()
    return describe(session, conversation)


# --- Quick replies (I4) ----------------------------------------------------------------------


def list_quick_replies(session: Session, workspace: Workspace) -> Sequence[QuickReply]:
    return repository.quick_replies(session, workspace)


def save_quick_reply(
    session: Session,
    *,
    workspace: Workspace,
    data: Mapping[str, Any],
    reply_id: int | None = None,
    now: datetime,
) -> QuickReply:
    """Create (``reply_id`` None) or change a quick reply; the body must compile."""
    reply = None
    if reply_id is not None:
        reply = repository.get_quick_reply(session, workspace, reply_id)
        if reply is None:
            raise not_found("quick reply")
    shortcut = check_shortcut(str(data.get("shortcut") or (reply.shortcut if reply else "")))
    other = repository.quick_reply_by_shortcut(session, workspace, shortcut)
    if other is not None and other is not reply:
        raise conflict("shortcut_taken", f"/{shortcut} is already used", field="shortcut")
    body = str(data.get("body") or (reply.body if reply else ""))
    if not body.strip() or len(body) > 4096:
        raise invalid("required", "a quick reply has 1-4096 characters", field="body")
    check_template(body, field="body")
    title = str(data.get("title") or (reply.title if reply else shortcut)).strip()[:200]
    if reply is None:
        reply = QuickReply(workspace_id=workspace.id, created_at=now)
        session.add(reply)
    reply.shortcut, reply.title, reply.body, reply.updated_at = shortcut, title, body, now
    session.flush()
    return reply


def delete_quick_reply(session: Session, *, workspace: Workspace, reply_id: int) -> None:
    reply = repository.get_quick_reply(session, workspace, reply_id)
    if reply is None:
        raise not_found("quick reply")
    session.delete(reply)
    session.flush()


def render_quick_reply(
    session: Session,
    *,
    workspace: Workspace,
    shortcut: str,
    conversation_id: int,
    agent_name: str | None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The quick reply's text for this conversation's contact (``{{ contact.first_name }}``,
    ``{{ agent.name }}``, ``{{ workspace.name }}`` and any ``extra`` variables)."""
    reply = repository.quick_reply_by_shortcut(session, workspace, check_shortcut(shortcut))
    if reply is None:
        raise not_found("quick reply", field="shortcut")
    conversation = get_conversation_or_404(session, workspace, conversation_id)
    contact = contacts.get_contact_or_404(session, workspace, conversation.contact_id)
    first_name = contact.first_name or (contact.name.split()[0] if contact.name else "")
    variables = {
        "contact": {
            "name": contact.name or "",
            "first_name": first_name,
            "last_name": contact.last_name or "",
            "phone": contact.phone or "",
            "email": contact.email or "",
            "fields": dict(contact.custom_fields),
        },
        "agent": {"name": agent_name or ""},
        "workspace": {"name": workspace.name},
        **dict(extra or {}),
    }
    return render_template(reply.body, variables, field="body").strip()


def attach_media(
    session: Session, *, message_id: int, stored: Mapping[str, Any], now: datetime
) -> None:
    """Record where a message's downloaded file is kept (I5)."""
    message = repository.message_by_id_for_update(session, message_id)
    if message is None:
        return
    message.content = {**message.content, "stored_media": dict(stored)}
    message.updated_at = now


def stored_media_of(session: Session, workspace: Workspace, message_id: int) -> Mapping[str, Any]:
    """Raises ``TidingsError`` (404) when the message has no downloaded file (yet)."""
    stored = get_message_or_404(session, workspace, message_id).content.get("stored_media")
    if not isinstance(stored, Mapping):
        raise not_found("media of this message")
    return stored
