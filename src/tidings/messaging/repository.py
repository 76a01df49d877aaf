"""Queries of the inbox. Every read of an owned row takes the workspace."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, defer

from tidings.db.base import among, insert_new, table_of
from tidings.messaging.domain import InboxState, SlotGrant, grant_slots
from tidings.messaging.orm import (
    Conversation,
    ConversationLabel,
    ConversationNote,
    Message,
    NumberPacing,
    QuickReply,
    SendTrace,
)
from tidings.workspaces.orm import Workspace


def get_conversation(
    session: Session, workspace: Workspace, conversation_id: int
) -> Conversation | None:
    return session.scalar(
        select(Conversation).where(
            Conversation.id == conversation_id, Conversation.workspace_id == workspace.id
        )
    )


def find_conversation(
    session: Session, workspace_id: int, number_id: int, contact_id: int
) -> Conversation | None:
    return session.scalar(
        select(Conversation).where(
            Conversation.workspace_id == workspace_id,
            Conversation.number_id == number_id,
            Conversation.contact_id == contact_id,
        )
    )


def latest_conversation_of_contact(
    session: Session, workspace: Workspace, contact_id: int
) -> Conversation | None:
    return session.scalar(
        select(Conversation)
        .where(Conversation.workspace_id == workspace.id, Conversation.contact_id == contact_id)
        .order_by(Conversation.last_message_at.desc().nulls_last(), Conversation.id.desc())
        .limit(1)
    )


@dataclass(frozen=True)
class ConversationFilter:
    status: str | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    team_id: int | None = None
    number_id: int | None = None
    contact_id: int | None = None
    label: str | None = None
    unread_only: bool = False


def list_conversations(
    session: Session,
    workspace: Workspace,
    criteria: ConversationFilter,
    *,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[Conversation]:
    """Most recent activity first; ``after`` is the (last_message_at, id) of the previous page."""
    query: Select[Conversation] = select(Conversation).where(
        Conversation.workspace_id == workspace.id
    )
    if criteria.status:
        query = query.where(Conversation.status == criteria.status)
    if criteria.assignee_id is not None:
        query = query.where(Conversation.assignee_id == criteria.assignee_id)
    if criteria.unassigned:
        query = query.where(Conversation.assignee_id.is_(None))
    if criteria.team_id is not None:
        query = query.where(Conversation.team_id == criteria.team_id)
    if criteria.number_id is not None:
        query = query.where(Conversation.number_id == criteria.number_id)
    if criteria.contact_id is not None:
        query = query.where(Conversation.contact_id == criteria.contact_id)
    if criteria.unread_only:
        query = query.where(Conversation.unread_count > 0)
    if criteria.label:
        query = query.where(
            Conversation.id.in_(
                select(ConversationLabel.conversation_id).where(
                    ConversationLabel.workspace_id == workspace.id,
                    ConversationLabel.label == criteria.label,
                )
            )
        )
    if after is not None:
        at, last_id = after
        query = query.where(
            or_(
                Conversation.last_message_at < at,
                and_(Conversation.last_message_at == at, Conversation.id < last_id),
            )
        )
    return session.scalars(
        query.order_by(Conversation.last_message_at.desc(), Conversation.id.desc()).limit(limit)
    ).all()


def thread(
    session: Session, conversation: Conversation, *, before_id: int | None, limit: int
) -> Sequence[Message]:
    """The latest ``limit`` messages before ``before_id``, newest first."""
    query = select(Message).where(
        Message.conversation_id == conversation.id,
        Message.workspace_id == conversation.workspace_id,
    )
    if before_id is not None:
        query = query.where(Message.id < before_id)
    return session.scalars(query.order_by(Message.id.desc()).limit(limit)).all()


def get_message(session: Session, workspace: Workspace, message_id: int) -> Message | None:
    return session.scalar(
        select(Message).where(Message.id == message_id, Message.workspace_id == workspace.id)
    )


def message_by_id_for_update(session: Session, message_id: int) -> Message | None:
    """A message by id alone: for the dispatcher, which works across workspaces."""
    return session.scalar(select(Message).where(Message.id == message_id).with_for_update())


def messages_for_update(session: Session, message_ids: Sequence[int]) -> dict[int, Message]:
    """Messages by id, locked, in one query: for the dispatcher recording a batch."""
    if not message_ids:
        return {}
    # Locked in id order, like every batch that locks messages: two dispatchers recording
    # overlapping batches in different orders deadlocked on PostgreSQL.
    rows = session.scalars(
        select(Message)
        .where(Message.id.in_(set(message_ids)))
        .order_by(Message.id)
        .with_for_update()
    )
    return {row.id: row for row in rows}


def message_by_provider_id(session: Session, number_id: int, provider_id: str) -> Message | None:
    return session.scalar(
        select(Message).where(
            Message.number_id == number_id, Message.provider_message_id == provider_id
        )
    )


def provider_ids_present(session: Session, keys: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of these ``(number_id, provider_message_id)`` are stored: one narrow query per
    number (and per 500 ids)."""
    by_number: dict[int, list[str]] = defaultdict(list)
    for number_id, provider_id in keys:
        by_number[number_id].append(provider_id)
    present: set[tuple[int, str]] = set()
    for number_id, provider_ids in by_number.items():
        for start in range(0, len(provider_ids), 500):
            rows = session.scalars(
                select(Message.provider_message_id).where(
                    Message.number_id == number_id,
                    among(session, Message.provider_message_id, provider_ids[start : start + 500]),
                )
            )
            present.update((number_id, provider_id) for provider_id in rows if provider_id)
    return present


def inbox_states(
    session: Session, workspace_id: int, pairs: Iterable[tuple[int, int]], *, lock: bool
) -> dict[tuple[int, int], tuple[int, InboxState]]:
    """The id and inbox state of the conversations of these ``(number_id, contact_id)``
    pairs, as plain values (no ORM objects to go stale under a set-based write); with
    ``lock`` held for update, in id order, so two workers never wait on each other in a
    circle."""
    wanted = set(pairs)
    if not wanted:
        return {}
    table = table_of(Conversation)
    query = (
        select(
            table.c.id,
            table.c.number_id,
            table.c.contact_id,
            table.c.status,
            table.c.unread_count,
            table.c.last_inbound_at,
            table.c.last_message_at,
            table.c.snoozed_until,
        )
        .where(
            table.c.workspace_id == workspace_id,
            among(session, table.c.contact_id, sorted({c for _, c in wanted})),
        )
        .order_by(table.c.id)
    )
    if lock:
        query = query.with_for_update()
    found: dict[tuple[int, int], tuple[int, InboxState]] = {}
    for row in session.execute(query):
        if (row.number_id, row.contact_id) in wanted:
            found[row.number_id, row.contact_id] = (
                row.id,
                InboxState(
                    status=row.status,
                    unread_count=row.unread_count,
                    last_inbound_at=row.last_inbound_at,
                    last_message_at=row.last_message_at,
                    snoozed_until=row.snoozed_until,
                ),
            )
    return found


def messages_by_provider_ids(
    session: Session, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], Message]:
    """The messages these ``(number_id, provider_message_id)`` name, found in one query per
    number (and per 500 ids, bound as one parameter)."""
    by_number: dict[int, list[str]] = defaultdict(list)
    for number_id, provider_id in keys:
        by_number[number_id].append(provider_id)
    found: dict[tuple[int, str], Message] = {}
    for number_id, provider_ids in by_number.items():
        for start in range(0, len(provider_ids), 500):
            chunk = provider_ids[start : start + 500]
            rows = session.scalars(
                select(Message)
                .where(
                    Message.number_id == number_id,
                    among(session, Message.provider_message_id, chunk),
                )
                # A report never reads what was sent; parsing it was a fifth of the work.
                .options(defer(Message.content))
            )
            for row in rows:
                assert row.provider_message_id is not None
                found[number_id, row.provider_message_id] = row
    return found


def message_by_idempotency_key(session: Session, workspace: Workspace, key: str) -> Message | None:
    return session.scalar(
        select(Message).where(Message.workspace_id == workspace.id, Message.idempotency_key == key)
    )


def claim_due_outbound(
    session: Session, *, channel: str, now: datetime, limit: int
) -> Sequence[Message]:
    """Lock up to ``limit`` queued or deferred messages of ``channel`` that are due, oldest
    due first."""
    return session.scalars(
        select(Message)
        .where(
            Message.channel == channel,
            Message.status.in_(("queued", "deferred")),
            Message.next_attempt_at <= now,
        )
        .order_by(Message.next_attempt_at, Message.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def lock_in_id_order(connection: Connection, message_ids: Iterable[int]) -> None:
    """Lock the messages in id order before changing several (a no-op on SQLite, whose writer
    holds the whole database). Every batch that locks messages takes them in this order: the
    dispatcher recording one batch while its wire log marks the next deadlocked otherwise."""
    table = table_of(Message)
    connection.execute(
        select(table.c.id)
        .where(among(connection, table.c.id, sorted(set(message_ids))))
        .order_by(table.c.id)
        .with_for_update()
    )


def mark_on_wire(connection: Connection, message_ids: Sequence[int], *, now: datetime) -> None:
    """Precondition: the messages are locked (``lock_in_id_order``)."""
    if message_ids:
        table = table_of(Message)
        connection.execute(
            update(table).where(among(connection, table.c.id, message_ids)).values(wire_at=now)
        )


def note_provider_ids(connection: Connection, found: Sequence[tuple[int, str]]) -> None:
    """The provider's ids of accepted messages, kept at once (the batch records the rest).

    Precondition: the messages are locked (``lock_in_id_order``)."""
    if found:
        table = table_of(Message)
        connection.execute(
            update(table)
            .where(table.c.id == bindparam("message_id"), table.c.provider_message_id.is_(None))
            .values(provider_message_id=bindparam("provider_id")),
            [{"message_id": m, "provider_id": p} for m, p in sorted(found)],
        )


def stale_in_flight(
    session: Session,
    *,
    older_than: datetime,
    live_workers: Sequence[str] | None,
    limit: int,
) -> Sequence[Message]:
    """Messages left ``sending``: claimed by a worker that is not among ``live_workers`` (its
    lease ran out), or, claimed by nobody known (e-mail, rows from before leases), not
    touched since ``older_than``. Without ``live_workers`` the age rule applies to all."""
    aged: ColumnElement[bool] = Message.updated_at < older_than
    if live_workers is None:
        stale = aged
    else:
        lost: ColumnElement[bool] = Message.claimed_by.is_not(None)
        if live_workers:
            lost = and_(lost, Message.claimed_by.not_in(list(live_workers)))
        stale = or_(and_(Message.claimed_by.is_(None), aged), lost)
    return session.scalars(
        select(Message)
        .where(Message.status == "sending", stale)
        .order_by(Message.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def conversations_by_ids(session: Session, ids: Sequence[int]) -> dict[int, Conversation]:
    if not ids:
        return {}
    rows = session.scalars(
        select(Conversation)
        .where(Conversation.id.in_(set(ids)))
        .order_by(Conversation.id)  # locked in id order, as messages are
        .with_for_update()
    )
    return {row.id: row for row in rows}


def due_snoozed(session: Session, *, now: datetime, limit: int) -> Sequence[Conversation]:
    return session.scalars(
        select(Conversation)
        .where(Conversation.status == "snoozed", Conversation.snoozed_until <= now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def notes_of(session: Session, conversation: Conversation) -> Sequence[ConversationNote]:
    return session.scalars(
        select(ConversationNote)
        .where(
            ConversationNote.conversation_id == conversation.id,
            ConversationNote.workspace_id == conversation.workspace_id,
        )
        .order_by(ConversationNote.id)
    ).all()


def labels_of(session: Session, conversation_ids: Sequence[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    if not conversation_ids:
        return found
    rows = session.execute(
        select(ConversationLabel.conversation_id, ConversationLabel.label)
        .where(ConversationLabel.conversation_id.in_(set(conversation_ids)))
        .order_by(ConversationLabel.label)
    )
    for conversation_id, label in rows:
        found.setdefault(conversation_id, []).append(label)
    return found


def find_label(
    session: Session, conversation: Conversation, label: str
) -> ConversationLabel | None:
    return session.scalar(
        select(ConversationLabel).where(
            ConversationLabel.conversation_id == conversation.id,
            ConversationLabel.label == label,
        )
    )


def quick_replies(session: Session, workspace: Workspace) -> Sequence[QuickReply]:
    return session.scalars(
        select(QuickReply)
        .where(QuickReply.workspace_id == workspace.id)
        .order_by(QuickReply.shortcut)
    ).all()


def quick_reply_by_shortcut(
    session: Session, workspace: Workspace, shortcut: str
) -> QuickReply | None:
    return session.scalar(
        select(QuickReply).where(
            QuickReply.workspace_id == workspace.id, QuickReply.shortcut == shortcut
        )
    )


def get_quick_reply(session: Session, workspace: Workspace, reply_id: int) -> QuickReply | None:
    return session.scalar(
        select(QuickReply).where(QuickReply.id == reply_id, QuickReply.workspace_id == workspace.id)
    )


def last_inbound_of_contact(
    session: Session, workspace: Workspace, contact_id: int
) -> datetime | None:
    return session.scalar(
        select(func.max(Conversation.last_inbound_at)).where(
            Conversation.workspace_id == workspace.id, Conversation.contact_id == contact_id
        )
    )


def automation_paused_until(
    session: Session, workspace: Workspace, contact_id: int
) -> datetime | None:
    return session.scalar(
        select(func.max(Conversation.automation_paused_until)).where(
            Conversation.workspace_id == workspace.id, Conversation.contact_id == contact_id
        )
    )


def traces_of(session: Session, message: Message) -> Sequence[SendTrace]:
    return session.scalars(
        select(SendTrace)
        .where(SendTrace.message_id == message.id, SendTrace.workspace_id == message.workspace_id)
        .order_by(SendTrace.id)
    ).all()


# What went (or may have gone) out: the sending policy counts these (P2-P4).
DISPATCHED = ("sending", "uncertain", "accepted", "sent", "delivered", "read", "played")


def dispatched_since(
    session: Session, contact_ids: Iterable[int], since: datetime
) -> dict[int, list[Any]]:
    """What went out to these contacts since ``since``, as plain rows by contact (the ids come
    from our own rows): what the sending policy counts."""
    wanted = list(set(contact_ids))
    found: dict[int, list[Any]] = defaultdict(list)
    if not wanted:
        return found
    rows = session.execute(
        select(
            Message.contact_id,
            Message.channel,
            Message.dispatched_at,
            Message.updated_at,
            Message.purpose,
            Message.origin,
            Message.kind,
            Message.content_digest,
            Message.notification_type,
        ).where(
            among(session, Message.contact_id, wanted),
            Message.dispatched_at > since,
            Message.status.in_(DISPATCHED),
        )
    )
    for row in rows:
        found[row.contact_id].append(row)
    return found


def automation_pauses(session: Session, contact_ids: Iterable[int]) -> dict[int, datetime]:
    """The latest automation pause (I3) of each contact over all its conversations."""
    wanted = list(set(contact_ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(Conversation.contact_id, func.max(Conversation.automation_paused_until))
        .where(among(session, Conversation.contact_id, wanted))
        .group_by(Conversation.contact_id)
    )
    return {contact_id: until for contact_id, until in rows if until is not None}


def message_moments(session: Session, message_ids: Iterable[int]) -> Sequence[Any]:
    wanted = sorted(set(message_ids))
    if not wanted:
        return []
    return session.execute(
        select(
            Message.id,
            Message.status,
            Message.dispatched_at,
            Message.created_at,
            Message.delivered_at,
            Message.read_at,
        ).where(among(session, Message.id, wanted))
    ).all()


def last_inbound_of_contacts(session: Session, contact_ids: Iterable[int]) -> dict[int, datetime]:
    """Each contact's last message to any of our numbers (the P1 window), by contact id."""
    wanted = list(set(contact_ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(Conversation.contact_id, func.max(Conversation.last_inbound_at))
        .where(among(session, Conversation.contact_id, wanted))
        .group_by(Conversation.contact_id)
    )
    return {contact_id: at for contact_id, at in rows if at is not None}


def last_messages_query(workspace_id: int) -> Any:
    """``(contact_id, last_inbound_at, last_outbound_at)`` per contact of the workspace, over
    all its numbers: what conditions on message recency read (compiled into audiences)."""
    return (
        select(
            Conversation.contact_id.label("contact_id"),
            func.max(Conversation.last_inbound_at).label("last_inbound_at"),
            func.max(Conversation.last_outbound_sent_at).label("last_outbound_at"),
        )
        .where(Conversation.workspace_id == workspace_id)
        .group_by(Conversation.contact_id)
    )


def last_messages_of_contacts(
    session: Session, contact_ids: Iterable[int]
) -> dict[int, tuple[datetime | None, datetime | None]]:
    """Each contact's last inbound and last accepted outbound WhatsApp message, by contact id."""
    wanted = list(set(contact_ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(
            Conversation.contact_id,
            func.max(Conversation.last_inbound_at),
            func.max(Conversation.last_outbound_sent_at),
        )
        .where(among(session, Conversation.contact_id, wanted))
        .group_by(Conversation.contact_id)
    )
    return {contact_id: (inbound, outbound) for contact_id, inbound, outbound in rows}


def traces_of_contact(
    session: Session, workspace: Workspace, contact_id: int, *, limit: int
) -> Sequence[SendTrace]:
    return session.scalars(
        select(SendTrace)
        .where(SendTrace.workspace_id == workspace.id, SendTrace.contact_id == contact_id)
        .order_by(SendTrace.at.desc(), SendTrace.id.desc())
        .limit(limit)
    ).all()


def dispatched_by_number(session: Session, number_id: int, since: datetime, *, at_most: int) -> int:
    """How many messages a number handed out since ``since``, counted up to ``at_most``
    (its daily quota, P6): enough to know whether the quota is reached."""
    handed = (
        select(Message.id)
        .where(Message.number_id == number_id, Message.dispatched_at > since)
        .limit(at_most)
        .subquery()
    )
    return int(session.scalar(select(func.count()).select_from(handed)) or 0)


def oldest_dispatches(
    session: Session,
    *,
    since: datetime,
    limit: int,
    number_id: int | None = None,
    workspace_id: int | None = None,
) -> list[datetime]:
    """The oldest dispatch times since ``since`` of a number, or of a workspace's sends outside
    the window (the messaging tier): when a rolling limit has room again."""
    query = select(Message.dispatched_at).where(Message.dispatched_at > since)
    if number_id is not None:
        query = query.where(Message.number_id == number_id)
    if workspace_id is not None:
        query = query.where(Message.workspace_id == workspace_id, Message.outside_window.is_(True))
    rows = session.scalars(query.order_by(Message.dispatched_at).limit(limit))
    return [at for at in rows if at is not None]


def reached_outside_window(
    session: Session, workspace_id: int, since: datetime, *, at_most: int
) -> set[int]:
    """Contacts a workspace reached outside their window since ``since`` (its messaging
    tier, P6), up to ``at_most`` of them."""
    rows = session.scalars(
        select(Message.contact_id)
        .where(
            Message.workspace_id == workspace_id,
            Message.dispatched_at > since,
            Message.outside_window.is_(True),
        )
        .distinct()
        .limit(at_most)
    )
    return set(rows)


def cost_by_category(
    session: Session, workspace: Workspace, since: datetime, until: datetime
) -> list[tuple[str | None, int, float]]:
    """Per pricing category: messages charged and their cost, for messages delivered in
    [since, until)."""
    rows = session.execute(
        select(
            Message.pricing_category,
            func.count(),
            func.coalesce(func.sum(Message.cost), 0.0),
        )
        .where(
            Message.workspace_id == workspace.id,
            Message.cost.is_not(None),
            Message.delivered_at >= since,
            Message.delivered_at < until,
        )
        .group_by(Message.pricing_category)
    )
    return [(c, int(n), float(total or 0.0)) for c, n, total in rows]


def paid_conversations(
    session: Session, workspace: Workspace, since: datetime, until: datetime
) -> int:
    return int(
        session.scalar(
            select(func.count(func.distinct(Message.conversation_id))).where(
                Message.workspace_id == workspace.id,
                Message.cost > 0,
                Message.delivered_at >= since,
                Message.delivered_at < until,
            )
        )
        or 0
    )


def change_mark(session: Session, workspace_id: int) -> str:
    latest_message = session.scalar(
        select(func.max(Message.updated_at)).where(Message.workspace_id == workspace_id)
    )
    latest_conversation = session.scalar(
        select(func.max(Conversation.updated_at)).where(Conversation.workspace_id == workspace_id)
    )
    return f"{latest_message}|{latest_conversation}"


def messages_after(
    session: Session, workspace_id: int, *, after_id: int, contact_ids: list[int], limit: int
) -> Sequence[Message]:
    if not contact_ids:
        return []
    return session.scalars(
        select(Message)
        .where(
            Message.workspace_id == workspace_id,
            Message.id > after_id,
            among(session, Message.contact_id, contact_ids),
            Message.status.in_(HISTORY_STATUSES),
        )
        .order_by(Message.id)
        .limit(limit)
    ).all()


def latest_message_id(session: Session, workspace_id: int) -> int:
    return int(
        session.scalar(select(func.max(Message.id)).where(Message.workspace_id == workspace_id))
        or 0
    )


# What a conversation's history holds: messages that arrived, or went out to the provider.
HISTORY_STATUSES = ("received", "accepted", "sent", "delivered", "read", "played")


def conversation_messages_between(
    session: Session, workspace: Workspace, since: datetime, until: datetime
) -> Sequence[Any]:
    """(conversation_id, created_at, direction, author_id) of the workspace's messages in
    conversations, from ``since`` to ``until`` (both included); outbound ones that never went
    (skipped) left out."""
    return session.execute(
        select(Message.conversation_id, Message.created_at, Message.direction, Message.author_id)
        .where(
            Message.workspace_id == workspace.id,
            Message.conversation_id.is_not(None),
            Message.created_at >= since,
            Message.created_at <= until,
            or_(Message.direction == "in", Message.status != "skipped"),
        )
        .order_by(Message.conversation_id, Message.created_at, Message.id)
    ).all()


def reserve_send_slots(
    session: Session,
    number_id: int,
    *,
    wanted: int,
    now: float,
    horizon: float,
    interval: float,
) -> SlotGrant:
    """Take up to ``wanted`` send slots of a number from the bucket every worker shares; the
    row is locked until the claim commits (on SQLite the one writer serialises claims)."""
    insert_new(session, table_of(NumberPacing), [{"number_id": number_id, "next_slot": now}])
    next_slot = session.scalar(
        select(NumberPacing.next_slot).where(NumberPacing.number_id == number_id).with_for_update()
    )
    grant = grant_slots(
        float(next_slot if next_slot is not None else now),
        wanted=wanted,
        now=now,
        horizon=horizon,
        interval=interval,
    )
    if grant.count:
        session.execute(
            update(NumberPacing)
            .where(NumberPacing.number_id == number_id)
            .values(next_slot=grant.end)
            .execution_options(synchronize_session=False)
        )
    return grant


def give_back_send_slots(
    session: Session, number_id: int, *, end: float, unused: int, interval: float
) -> None:
    """Return the last ``unused`` slots of a grant ending at ``end``, if nobody reserved after
    it (rows held back by the policy after the reservation would leave gaps otherwise)."""
    if unused > 0:
        session.execute(
            update(NumberPacing)
            .where(NumberPacing.number_id == number_id, NumberPacing.next_slot == end)
            .values(next_slot=end - unused * interval)
            .execution_options(synchronize_session=False)
        )


def hold_number_until(session: Session, number_id: int, *, until: float) -> None:
    """No send on the number before ``until``: WhatsApp answered that it is over its rate."""
    session.execute(
        update(NumberPacing)
        .where(NumberPacing.number_id == number_id, NumberPacing.next_slot < until)
        .values(next_slot=until)
        .execution_options(synchronize_session=False)
    )


def uncertain_messages(
    session: Session, workspace: Workspace, *, after_id: int | None, limit: int
) -> Sequence[Message]:
    query = select(Message).where(
        Message.workspace_id == workspace.id, Message.status == "uncertain"
    )
    if after_id is not None:
        query = query.where(Message.id > after_id)
    return session.scalars(query.order_by(Message.id).limit(limit)).all()


def count_uncertain(session: Session, workspace: Workspace) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                Message.workspace_id == workspace.id, Message.status == "uncertain"
            )
        )
        or 0
    )


def uncertain_for_update(
    session: Session, workspace: Workspace, ids: Sequence[int] | None, *, limit: int
) -> Sequence[Message]:
    query = select(Message).where(
        Message.workspace_id == workspace.id, Message.status == "uncertain"
    )
    if ids is not None:
        query = query.where(Message.id.in_(list(ids)))
    return session.scalars(query.order_by(Message.id).limit(limit).with_for_update()).all()


def has_recent_notification(
    session: Session, *, contact_id: int, notification_type: str, since: datetime
) -> bool:
    """Whether a notification of this type was queued for the contact since ``since`` (and
    not skipped or failed: one that never went does not count)."""
    return (
        session.scalar(
            select(Message.id)
            .where(
                Message.contact_id == contact_id,
                Message.notification_type == notification_type,
                Message.created_at >= since,
                Message.status.not_in(("skipped", "failed")),
            )
            .limit(1)
        )
        is not None
    )
