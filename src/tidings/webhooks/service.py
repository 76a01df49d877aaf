"""Outgoing webhooks' use cases: subscriptions, the fan-out of events into deliveries, the
dispatcher's claim and record, dead letters and replay, health figures, and the recent
events that polling integrations read (X1, X3).

Runs inside the caller's transaction and never commits. Deliveries are written in the same
transaction as what caused them (transactional outbox) and posted only after it committed.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from tidings.contacts import service as contacts
from tidings.db.base import insert_new, table_of
from tidings.kernel.errors import conflict, invalid, not_found
from tidings.kernel.sealing import SecretBox
from tidings.scheduler import service as scheduler
from tidings.webhooks.domain import (
    DeliveryState,
    Outcome,
    RetryPolicy,
    after_attempt,
    check_event_names,
    check_target_url,
    judge,
    wants,
)
from tidings.webhooks.orm import WebhookDelivery, WebhookFeedPosition, WebhookSubscription
from tidings.workspaces import service as workspaces
from tidings.workspaces.orm import Workspace

SECRET_PREFIX = "whsec_"  # noqa: S105 — a prefix that says what the value is, not a secret
LEASE = timedelta(minutes=2)  # a claimed delivery not recorded by then is tried again
FEED = "webhooks"


# --- subscriptions ------------------------------------------------------------------------------


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def events_of(subscription: WebhookSubscription) -> list[str]:
    return list((subscription.events or {}).get("events") or [])


# Checks that the address may be called (DNS: an adapter's work), raising ValueError.
AddressCheck = Callable[[str], None]


def _checked(
    data: dict[str, Any], *, partial: bool, reachable: AddressCheck | None = None
) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for name, check in (("events", check_event_names), ("url", check_target_url)):
        if name in data or not partial:
            try:
                checked[name] = check(data.get(name))
            except ValueError as error:
                raise invalid(f"invalid_{name}", str(error), field=name) from None
    if "url" in checked and reachable is not None:  # last: the other fields are cheap
        try:
            reachable(checked["url"])
        except ValueError as refused:
            raise invalid("address_not_allowed", str(refused), field="url") from None
    if "description" in data:
        description = str(data.get("description") or "").strip()
        if len(description) > 500:
            raise invalid("invalid_description", "at most 500 characters", field="description")
        checked["description"] = description
    if "active" in data:
        checked["active"] = bool(data["active"])
    return checked


def create_subscription(
    session: Session,
    *,
    workspace: Workspace,
    box: SecretBox,
    data: dict[str, Any],
    origin: str,
    now: datetime,
    reachable: AddressCheck | None = None,
) -> tuple[WebhookSubscription, str]:
    """A new subscription and its signing secret (shown this once; ``rotate_secret`` makes a
    new one). ``reachable`` refuses addresses that may not be called.

    Raises:
        TidingsError: 422 naming ``url`` or ``events``.
    """
    checked = _checked(data, partial=False, reachable=reachable)
    secret = _new_secret()
    subscription = WebhookSubscription(
        workspace_id=workspace.id,
        url=checked["url"],
        events={"events": checked["events"]},
        description=checked.get("description", ""),
        sealed_secret=box.seal(secret),
        active=checked.get("active", True),
        origin=origin,
        retries=RetryPolicy().retries,
        retry_interval_seconds=int(RetryPolicy().interval.total_seconds()),
        after_event_id=contacts.latest_event_id(session),
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    session.flush()
    _forget_listeners(session)
    return subscription, secret


def list_subscriptions(session: Session, workspace: Workspace) -> Sequence[WebhookSubscription]:
    return session.scalars(
        select(WebhookSubscription)
        .where(WebhookSubscription.workspace_id == workspace.id)
        .order_by(WebhookSubscription.id)
    ).all()


def get_subscription_or_404(
    session: Session, workspace: Workspace, subscription_id: int
) -> WebhookSubscription:
    found = session.get(WebhookSubscription, subscription_id)
    if found is None or found.workspace_id != workspace.id:
        raise not_found("webhook subscription")
    return found


def update_subscription(
    session: Session,
    *,
    workspace: Workspace,
    subscription_id: int,
    data: dict[str, Any],
    now: datetime,
    reachable: AddressCheck | None = None,
) -> WebhookSubscription:
    """Change the address, events, description or whether it is active; switching it on again
    clears the reason it was switched off."""
    subscription = get_subscription_or_404(session, workspace, subscription_id)
    checked = _checked(data, partial=True, reachable=reachable)
    if "url" in checked:
        subscription.url = checked["url"]
    if "events" in checked:
        subscription.events = {"events": checked["events"]}
    if "description" in checked:
        subscription.description = checked["description"]
    if "active" in checked:
        subscription.active = checked["active"]
        if subscription.active:
            subscription.disabled_reason = None
    subscription.updated_at = now
    session.flush()
    _forget_listeners(session)
    return subscription


def delete_subscription(session: Session, workspace: Workspace, subscription_id: int) -> None:
    """Unsubscribe; its deliveries, pending or not, go with it."""
    session.delete(get_subscription_or_404(session, workspace, subscription_id))
    session.flush()
    _forget_listeners(session)


def rotate_secret(
    session: Session,
    *,
    workspace: Workspace,
    box: SecretBox,
    subscription_id: int,
    now: datetime,
) -> str:
    """A new signing secret, used from the next attempt on; the old one stops working."""
    subscription = get_subscription_or_404(session, workspace, subscription_id)
    secret = _new_secret()
    subscription.sealed_secret = box.seal(secret)
    subscription.updated_at = now
    session.flush()
    return secret


def private_addresses_allowed(workspace: Workspace, *, installation_allows: bool) -> bool:
    """Whether this workspace's webhooks may reach private networks: the installation's
    setting, or the workspace's own, which only the operator sets (CLI)."""
    return installation_allows or bool(workspace.allow_private_webhooks)


# --- events into deliveries ---------------------------------------------------------------------


def envelope(
    *,
    event_id: str,
    event_type: str,
    occurred_at: datetime,
    workspace_id: int,
    data: dict[str, Any],
) -> dict[str, Any]:
    """The JSON body every delivery has (docs/webhooks.md describes ``data`` per event)."""
    return {
        "id": event_id,
        "type": event_type,
        "occurred_at": _iso(occurred_at),
        "workspace_id": workspace_id,
        "data": data,
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class _Listener:
    id: int
    events: list[str]
    after_event_id: int


def _active_subscriptions(
    session: Session, workspace_ids: Collection[int]
) -> dict[int, list[_Listener]]:
    found: dict[int, list[_Listener]] = defaultdict(list)
    if not workspace_ids:
        return found
    rows = session.execute(
        select(
            WebhookSubscription.id,
            WebhookSubscription.workspace_id,
            WebhookSubscription.events,
            WebhookSubscription.after_event_id,
        ).where(
            WebhookSubscription.workspace_id.in_(sorted(workspace_ids)),
            WebhookSubscription.active.is_(True),
        )
    )
    for subscription_id, workspace_id, events, after in rows:
        found[workspace_id].append(
            _Listener(subscription_id, list((events or {}).get("events") or []), int(after or 0))
        )
    return found


_LISTENERS = "tidings.webhook_listeners"


def _listeners_of(session: Session, workspace_id: int) -> list[_Listener]:
    """The workspace's active subscriptions, read once per transaction: a mass send publishes
    a status per message, and subscriptions change rarely (and only through this module,
    which forgets the copy)."""
    known: dict[int, list[_Listener]] = session.info.setdefault(_LISTENERS, {})
    if workspace_id not in known:
        known[workspace_id] = _active_subscriptions(session, [workspace_id]).get(workspace_id, [])
    return known[workspace_id]


def _forget_listeners(session: Session, *_: object) -> None:
    session.info.pop(_LISTENERS, None)


event.listen(Session, "after_commit", _forget_listeners)
event.listen(Session, "after_soft_rollback", _forget_listeners)


def publish(
    session: Session,
    *,
    workspace_id: int,
    event_type: str,
    event_id: str,
    occurred_at: datetime,
    data: dict[str, Any],
    now: datetime,
    only_subscription: int | None = None,
) -> int:
    """Queue the event for every active subscription that wants it (or for one only); an event
    id already queued for a subscription is not queued twice. Returns how many were queued."""
    subscriptions = _listeners_of(session, workspace_id)
    if not subscriptions:
        return 0
    body = envelope(
        event_id=event_id,
        event_type=event_type,
        occurred_at=occurred_at,
        workspace_id=workspace_id,
        data=data,
    )
    rows = [
        _delivery_row(workspace_id, listener.id, body, now)
        for listener in subscriptions
        if (listener.id == only_subscription)
        or (only_subscription is None and wants(listener.events, event_type))
    ]
    return insert_new(session, table_of(WebhookDelivery), rows)


@dataclass(frozen=True)
class Announcement:
    event_type: str
    event_id: str
    occurred_at: datetime
    data: dict[str, Any]


def is_listened(session: Session, *, workspace_id: int, event_type: str) -> bool:
    """Whether any active subscription of the workspace wants ``event_type``: hot paths ask
    before building thousands of announcements nobody would receive."""
    return any(wants(who.events, event_type) for who in _listeners_of(session, workspace_id))


def publish_many(
    session: Session, *, workspace_id: int, events: Sequence[Announcement], now: datetime
) -> int:
    """``publish`` for many events of one workspace in one statement (hot paths: sequence
    steps); nothing at all is done when nobody subscribed."""
    listeners = _listeners_of(session, workspace_id)
    if not listeners or not events:
        return 0
    rows: list[dict[str, Any]] = []
    for announced in events:
        wanting = [who.id for who in listeners if wants(who.events, announced.event_type)]
        if not wanting:
            continue
        body = envelope(
            event_id=announced.event_id,
            event_type=announced.event_type,
            occurred_at=announced.occurred_at,
            workspace_id=workspace_id,
            data=announced.data,
        )
        rows.extend(_delivery_row(workspace_id, listener, body, now) for listener in wanting)
    return insert_new(session, table_of(WebhookDelivery), rows)


def _delivery_row(
    workspace_id: int, subscription_id: int, body: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "subscription_id": subscription_id,
        "event_id": body["id"],
        "event_type": body["type"],
        "payload": body,
        "state": DeliveryState.PENDING.value,
        "attempts": 0,
        "replays": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def send_test(
    session: Session, *, workspace: Workspace, subscription_id: int, now: datetime
) -> int:
    """Queue a ``ping`` for one subscription, active or not, to check the receiver."""
    subscription = get_subscription_or_404(session, workspace, subscription_id)
    body = envelope(
        event_id=f"ping_{secrets.token_hex(8)}",
        event_type="ping",
        occurred_at=now,
        workspace_id=workspace.id,
        data={"subscription_id": subscription.id, "message": "Tidings can reach you."},
    )
    insert_new(
        session,
        table_of(WebhookDelivery),
        [_delivery_row(workspace.id, subscription.id, body, now)],
    )
    return 1


def timeline_event_id(event_row: Any) -> str:
    return f"evt_{event_row.id}"


def timeline_envelopes(session: Session, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """The bodies of timeline events: the event and the contact as it is now."""
    contact_ids = {int(row.contact_id) for row in rows}
    profiles = contacts.profiles(session, contact_ids)
    tags = contacts.tag_labels(session, contact_ids)
    return [
        envelope(
            event_id=timeline_event_id(row),
            event_type=row.event_type,
            occurred_at=row.occurred_at,
            workspace_id=row.workspace_id,
            data={
                "event": {
                    "id": row.id,
                    "type": row.event_type,
                    "occurred_at": _iso(row.occurred_at),
                    "received_at": _iso(row.received_at),
                    "properties": row.properties or {},
                },
                "contact": _contact(profiles.get(int(row.contact_id)), tags, row.contact_id),
            },
        )
        for row in rows
    ]


def _contact(profile: Any, tags: dict[int, list[str]], contact_id: int) -> dict[str, Any]:
    if profile is None:
        return {"id": contact_id, "deleted": True}
    return {
        "id": profile.id,
        "phone": profile.phone,
        "email": profile.email,
        "name": profile.name,
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "locale": profile.locale,
        "country": profile.country,
        "lifecycle_stage": profile.lifecycle_stage,
        "score": profile.score,
        "lead_source": profile.lead_source,
        "custom_fields": profile.custom_fields,
        "tags": tags.get(profile.id, []),
    }


def fan_out(session: Session, *, now: datetime, limit: int) -> int:
    """One batch of the timeline feed into deliveries; returns how many events were read."""
    position = scheduler.feed_position(
        session,
        WebhookFeedPosition,
        FEED,
        start=lambda: contacts.latest_event_id(session),
        now=now,
    )
    rows = contacts.settled_events_after(session, position=position.position, now=now, limit=limit)
    if not rows:
        return 0
    subscriptions = _active_subscriptions(session, {row.workspace_id for row in rows})
    wanted = []
    for row in rows:
        chosen = [
            listener.id
            for listener in subscriptions.get(row.workspace_id, [])
            if row.id > listener.after_event_id and wants(listener.events, row.event_type)
        ]
        if chosen:
            wanted.append((row, chosen))
    if wanted:
        bodies = timeline_envelopes(session, [row for row, _ in wanted])
        deliveries = [
            _delivery_row(row.workspace_id, subscription_id, body, now)
            for (row, chosen), body in zip(wanted, bodies, strict=True)
            for subscription_id in chosen
        ]
        insert_new(session, table_of(WebhookDelivery), deliveries)
    position.position, position.updated_at = rows[-1].id, now
    return len(rows)


# --- the dispatcher's claim and record ----------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    workspace_id: int
    url: str
    secret: str
    body: bytes
    event_id: str
    event_type: str
    attempt: int
    allow_private: bool


def claim(session: Session, *, box: SecretBox, now: datetime, limit: int) -> list[Claimed]:
    """Due deliveries of active subscriptions, leased for ``LEASE`` with their attempt counted:
    a worker that dies before recording them leaves them to be tried again."""
    active = select(WebhookSubscription.id).where(WebhookSubscription.active.is_(True))
    rows = scheduler.claim_due(
        session,
        WebhookDelivery,
        due_column=WebhookDelivery.next_attempt_at,
        now=now,
        limit=limit,
        extra=(
            WebhookDelivery.state == DeliveryState.PENDING.value,
            WebhookDelivery.subscription_id.in_(active),
        ),
    )
    if not rows:
        return []
    subscriptions = {
        s.id: s
        for s in session.scalars(
            select(WebhookSubscription).where(
                WebhookSubscription.id.in_(sorted({r.subscription_id for r in rows}))
            )
        )
    }
    allowed: dict[int, bool] = {}
    claimed: list[Claimed] = []
    secrets_opened: dict[int, str] = {}
    for row in rows:
        subscription = subscriptions[row.subscription_id]
        if row.workspace_id not in allowed:
            workspace = workspaces.get_workspace(session, row.workspace_id)
            allowed[row.workspace_id] = bool(workspace and workspace.allow_private_webhooks)
        if subscription.id not in secrets_opened:
            secrets_opened[subscription.id] = box.open(subscription.sealed_secret)
        row.attempts += 1
        row.next_attempt_at = now + LEASE
        claimed.append(
            Claimed(
                delivery_id=row.id,
                workspace_id=row.workspace_id,
                url=subscription.url,
                secret=secrets_opened[subscription.id],
                body=orjson.dumps(row.payload),
                event_id=row.event_id,
                event_type=row.event_type,
                attempt=row.attempts,
                allow_private=allowed[row.workspace_id],
            )
        )
    session.flush()
    return claimed


@dataclass(frozen=True)
class Answer:
    delivery_id: int
    status_code: int | None
    error: str | None
    duration_ms: int


def record(session: Session, answers: Sequence[Answer], *, now: datetime) -> dict[str, int]:
    """What the receivers answered: delivered, to retry in five minutes, or dead (X3); a 410
    switches the subscription off (REST hooks' way to unsubscribe). Returns counts by state."""
    if not answers:
        return {}
    rows = {
        row.id: row
        for row in session.scalars(
            select(WebhookDelivery).where(
                WebhookDelivery.id.in_(sorted(a.delivery_id for a in answers))
            )
        )
    }
    subscriptions = {
        s.id: s
        for s in session.scalars(
            select(WebhookSubscription).where(
                WebhookSubscription.id.in_(sorted({r.subscription_id for r in rows.values()}))
            )
        )
    }
    counts: dict[str, int] = defaultdict(int)
    for answer in answers:
        row = rows.get(answer.delivery_id)
        if row is None or row.state != DeliveryState.PENDING.value:
            continue  # deleted or replayed meanwhile
        subscription = subscriptions[row.subscription_id]
        outcome = judge(answer.status_code)
        policy = RetryPolicy(
            subscription.retries, timedelta(seconds=subscription.retry_interval_seconds)
        )
        step = after_attempt(outcome, attempts=row.attempts, policy=policy, now=now)
        row.state = step.state.value
        row.last_status_code = answer.status_code
        row.last_error = answer.error[:1000] if answer.error else None
        row.duration_ms = answer.duration_ms
        if step.state is DeliveryState.DELIVERED:
            row.delivered_at = now
            subscription.last_success_at = now
        else:
            subscription.last_failure_at = now
            row.next_attempt_at = step.retry_at or now
        if outcome is Outcome.GONE and subscription.active:
            subscription.active = False
            _forget_listeners(session)
            subscription.disabled_reason = "the receiver answered 410 Gone: unsubscribed"
        counts[row.state] += 1
    session.flush()
    return dict(counts)


# --- dead letters, replay, health ---------------------------------------------------------------


def list_deliveries(
    session: Session,
    workspace: Workspace,
    *,
    subscription_id: int | None,
    state: str | None,
    before_id: int | None,
    limit: int,
) -> Sequence[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.workspace_id == workspace.id)
    if subscription_id is not None:
        get_subscription_or_404(session, workspace, subscription_id)
        query = query.where(WebhookDelivery.subscription_id == subscription_id)
    if state is not None:
        if state not in {s.value for s in DeliveryState}:
            raise invalid("invalid_state", "pending, delivered or dead", field="state")
        query = query.where(WebhookDelivery.state == state)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    return session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)).all()


def get_delivery_or_404(
    session: Session, workspace: Workspace, delivery_id: int
) -> WebhookDelivery:
    found = session.get(WebhookDelivery, delivery_id)
    if found is None or found.workspace_id != workspace.id:
        raise not_found("webhook delivery")
    return found


def _replay(row: WebhookDelivery, now: datetime) -> None:
    row.state = DeliveryState.PENDING.value
    row.attempts = 0
    row.next_attempt_at = now
    row.replays += 1


def replay_delivery(
    session: Session, *, workspace: Workspace, delivery_id: int, now: datetime
) -> WebhookDelivery:
    """Send a dead (or already delivered) delivery again, with a fresh set of retries.

    Raises:
        TidingsError: 404 unknown, 409 when it is still waiting for its next attempt.
    """
    row = get_delivery_or_404(session, workspace, delivery_id)
    if row.state == DeliveryState.PENDING.value:
        raise conflict("still_pending", "this delivery is still waiting for its next attempt")
    _replay(row, now)
    session.flush()
    return row


def replay_dead(
    session: Session, *, workspace: Workspace, subscription_id: int, now: datetime
) -> int:
    """Send every dead delivery of a subscription again (after the receiver was fixed)."""
    get_subscription_or_404(session, workspace, subscription_id)
    rows = session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.subscription_id == subscription_id,
            WebhookDelivery.state == DeliveryState.DEAD.value,
        )
    ).all()
    for row in rows:
        _replay(row, now)
    session.flush()
    return len(rows)


@dataclass(frozen=True)
class Health:
    """A subscription's figures over a window (O1): how many went through, how fast, and
    what is waiting."""

    delivered: int
    dead: int
    pending: int
    success_rate: float | None
    median_ms: int | None
    p95_ms: int | None
    oldest_pending_seconds: int | None


def health(
    session: Session,
    *,
    workspace: Workspace,
    subscription_id: int,
    now: datetime,
    window: timedelta = timedelta(hours=24),
) -> Health:
    get_subscription_or_404(session, workspace, subscription_id)
    mine = WebhookDelivery.subscription_id == subscription_id
    counts = dict(
        session.execute(
            select(WebhookDelivery.state, func.count())
            .where(mine, WebhookDelivery.created_at >= now - window)
            .group_by(WebhookDelivery.state)
        ).all()
    )
    durations = sorted(
        d
        for d in session.scalars(
            select(WebhookDelivery.duration_ms)
            .where(
                mine,
                WebhookDelivery.state == DeliveryState.DELIVERED.value,
                WebhookDelivery.delivered_at >= now - window,
            )
            .order_by(WebhookDelivery.id.desc())
            .limit(10_000)
        )
        if d is not None
    )
    pending = int(
        session.scalar(
            select(func.count()).where(mine, WebhookDelivery.state == DeliveryState.PENDING.value)
        )
        or 0
    )
    oldest = session.scalar(
        select(func.min(WebhookDelivery.created_at)).where(
            mine, WebhookDelivery.state == DeliveryState.PENDING.value
        )
    )
    delivered, dead = int(counts.get("delivered", 0)), int(counts.get("dead", 0))
    settled = delivered + dead
    return Health(
        delivered=delivered,
        dead=dead,
        pending=pending,
        success_rate=round(delivered / settled, 4) if settled else None,
        median_ms=_quantile(durations, 0.5),
        p95_ms=_quantile(durations, 0.95),
        oldest_pending_seconds=(
            int((now - oldest).total_seconds()) if oldest is not None else None
        ),
    )


def _quantile(ordered: list[int], share: float) -> int | None:
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else None


# --- polling ------------------------------------------------------------------------------------

RECENT_MAX = 100


def recent(
    session: Session, *, workspace: Workspace, event: str, limit: int
) -> list[dict[str, Any]]:
    """The newest events of a type, newest first, in the body deliveries have: what Zapier's
    and Make's polling triggers read (they tell new items by ``id``).

    Raises:
        TidingsError: 422 for an unknown event name or a limit outside 1-100.
    """
    try:
        names = check_event_names([event])
    except ValueError as error:
        raise invalid("invalid_event", str(error), field="event") from None
    if not 1 <= limit <= RECENT_MAX:
        raise invalid("invalid_limit", f"between 1 and {RECENT_MAX}", field="limit")
    rows = contacts.latest_events(session, workspace, types=names, limit=limit)
    return timeline_envelopes(session, rows)
