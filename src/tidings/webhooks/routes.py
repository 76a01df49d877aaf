"""HTTP routes of outgoing webhooks: subscriptions, deliveries, dead letters and replay
(``/api/v1/webhooks``), and the REST-hook and polling shape that Zapier, Make and n8n expect
(``/api/v1/hooks``)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Query, Response

from tidings.api.deps import Context
from tidings.webhooks import service
from tidings.webhooks.adapter import WebhookRefusedError, check_public_address, workspace_secret
from tidings.webhooks.domain import CATALOG
from tidings.webhooks.orm import WebhookDelivery, WebhookSubscription
from tidings.webhooks.schemas import (
    DeliveryRead,
    EventTypeRead,
    HealthRead,
    HookIn,
    HookRead,
    ReplayedRead,
    SecretRead,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionRead,
)
from tidings.workspaces.domain import Role

router = APIRouter(tags=["webhooks"])


def _read(subscription: WebhookSubscription) -> SubscriptionRead:
    return SubscriptionRead(
        id=subscription.id,
        url=subscription.url,
        events=service.events_of(subscription),
        description=subscription.description,
        active=subscription.active,
        origin=subscription.origin,
        retries=subscription.retries,
        retry_interval_seconds=subscription.retry_interval_seconds,
        disabled_reason=subscription.disabled_reason,
        last_success_at=subscription.last_success_at,
        last_failure_at=subscription.last_failure_at,
        created_at=subscription.created_at,
    )


def _delivery(row: WebhookDelivery) -> DeliveryRead:
    return DeliveryRead(
        id=row.id,
        subscription_id=row.subscription_id,
        event_id=row.event_id,
        event_type=row.event_type,
        state=row.state,
        attempts=row.attempts,
        replays=row.replays,
        next_attempt_at=row.next_attempt_at if row.state == "pending" else None,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        duration_ms=row.duration_ms,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        payload=row.payload,
    )


def _reachable(ctx: Context) -> service.AddressCheck | None:
    """Refuse an address in a private network when it is given, with the field named, rather
    than at the first delivery (unless the operator allowed it)."""
    if service.private_addresses_allowed(
        ctx.workspace, installation_allows=ctx.tidings.settings.allow_private_webhooks
    ):
        return None

    def check(url: str) -> None:
        try:
            check_public_address(url, ctx.tidings.webhook_policy())
        except WebhookRefusedError as refused:
            raise ValueError(str(refused)) from None

    return check


@router.get("/webhooks/events")
def list_event_types(ctx: Context) -> list[EventTypeRead]:
    """Every event a subscription may ask for."""
    return [EventTypeRead(name=name, description=text) for name, text in CATALOG.items()]


@router.get("/webhooks/signing-secret")
def one_off_signing_secret(ctx: Context) -> SecretRead:
    """The secret that signs this workspace's one-off webhooks: a sequence's webhook step and a
    rule's webhook action (subscriptions have their own)."""
    ctx.require(Role.ADMIN, action="reading webhook secrets")
    return SecretRead(
        secret=workspace_secret(
            ctx.tidings.settings.secret_key.get_secret_value(), ctx.workspace.id
        )
    )


@router.get("/webhooks")
def list_subscriptions(ctx: Context) -> list[SubscriptionRead]:
    ctx.require(Role.ADMIN, action="reading webhook subscriptions")
    return [_read(s) for s in service.list_subscriptions(ctx.session, ctx.workspace)]


@router.post("/webhooks", status_code=201)
def create_subscription(body: SubscriptionIn, ctx: Context) -> SubscriptionCreated:
    ctx.require(Role.ADMIN, action="subscribing to webhooks")
    subscription, secret = service.create_subscription(
        ctx.session,
        workspace=ctx.workspace,
        box=ctx.tidings.secret_box,
        data=body.model_dump(exclude_none=True),
        origin="api",
        now=ctx.now,
        reachable=_reachable(ctx),
    )
    return SubscriptionCreated(**_read(subscription).model_dump(), secret=secret)


@router.get("/webhooks/deliveries")
def list_deliveries(
    ctx: Context,
    subscription_id: int | None = None,
    state: str | None = Query(None, description="pending, delivered or dead"),
    before_id: int | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> list[DeliveryRead]:
    ctx.require(Role.ADMIN, action="reading webhook deliveries")
    rows = service.list_deliveries(
        ctx.session,
        ctx.workspace,
        subscription_id=subscription_id,
        state=state,
        before_id=before_id,
        limit=limit,
    )
    return [_delivery(row) for row in rows]


@router.get("/webhooks/deliveries/{delivery_id}")
def get_delivery(delivery_id: int, ctx: Context) -> DeliveryRead:
    ctx.require(Role.ADMIN, action="reading webhook deliveries")
    return _delivery(service.get_delivery_or_404(ctx.session, ctx.workspace, delivery_id))


@router.post("/webhooks/deliveries/{delivery_id}/replay")
def replay_delivery(delivery_id: int, ctx: Context) -> DeliveryRead:
    """Send a dead (or delivered) delivery again, with a fresh set of retries."""
    ctx.require(Role.ADMIN, action="replaying webhook deliveries")
    return _delivery(
        service.replay_delivery(
            ctx.session, workspace=ctx.workspace, delivery_id=delivery_id, now=ctx.now
        )
    )


@router.get("/webhooks/{subscription_id}")
def get_subscription(subscription_id: int, ctx: Context) -> SubscriptionRead:
    ctx.require(Role.ADMIN, action="reading webhook subscriptions")
    return _read(service.get_subscription_or_404(ctx.session, ctx.workspace, subscription_id))


@router.patch("/webhooks/{subscription_id}")
def update_subscription(
    subscription_id: int, body: SubscriptionIn, ctx: Context
) -> SubscriptionRead:
    ctx.require(Role.ADMIN, action="changing webhook subscriptions")
    return _read(
        service.update_subscription(
            ctx.session,
            workspace=ctx.workspace,
            subscription_id=subscription_id,
            data=body.model_dump(exclude_unset=True),
            now=ctx.now,
            reachable=_reachable(ctx),
        )
    )


@router.delete("/webhooks/{subscription_id}", status_code=204)
def delete_subscription(subscription_id: int, ctx: Context) -> Response:
    ctx.require(Role.ADMIN, action="deleting webhook subscriptions")
    service.delete_subscription(ctx.session, ctx.workspace, subscription_id)
    return Response(status_code=204)


@router.post("/webhooks/{subscription_id}/rotate-secret")
def rotate_secret(subscription_id: int, ctx: Context) -> SecretRead:
    ctx.require(Role.ADMIN, action="rotating webhook secrets")
    return SecretRead(
        secret=service.rotate_secret(
            ctx.session,
            workspace=ctx.workspace,
            box=ctx.tidings.secret_box,
            subscription_id=subscription_id,
            now=ctx.now,
        )
    )


@router.post("/webhooks/{subscription_id}/test", status_code=202)
def send_test(subscription_id: int, ctx: Context) -> ReplayedRead:
    """Queue a ``ping`` delivery to check the receiver and its signature check."""
    ctx.require(Role.ADMIN, action="testing webhooks")
    queued = service.send_test(
        ctx.session, workspace=ctx.workspace, subscription_id=subscription_id, now=ctx.now
    )
    return ReplayedRead(replayed=queued)


@router.post("/webhooks/{subscription_id}/replay-dead")
def replay_dead(subscription_id: int, ctx: Context) -> ReplayedRead:
    """Send every dead delivery of the subscription again."""
    ctx.require(Role.ADMIN, action="replaying webhook deliveries")
    return ReplayedRead(
        replayed=service.replay_dead(
            ctx.session, workspace=ctx.workspace, subscription_id=subscription_id, now=ctx.now
        )
    )


@router.get("/webhooks/{subscription_id}/health")
def subscription_health(
    subscription_id: int, ctx: Context, hours: int = Query(24, ge=1, le=24 * 30)
) -> HealthRead:
    """Deliveries over the last ``hours``: success rate, latency, backlog (O1)."""
    ctx.require(Role.ADMIN, action="reading webhook health")
    figures = service.health(
        ctx.session,
        workspace=ctx.workspace,
        subscription_id=subscription_id,
        now=ctx.now,
        window=timedelta(hours=hours),
    )
    return HealthRead(**figures.__dict__)


# --- REST hooks and polling (Zapier, Make, n8n) -------------------------------------------------


@router.post("/hooks", status_code=201)
def subscribe_hook(body: HookIn, ctx: Context) -> HookRead:
    """REST-hook subscribe: ``{"target_url": …, "event": …}`` → ``{"id": …}``; unsubscribe
    with ``DELETE /hooks/{id}``. The receiver may also answer 410 to unsubscribe."""
    ctx.require(Role.ADMIN, action="subscribing to webhooks")
    subscription, secret = service.create_subscription(
        ctx.session,
        workspace=ctx.workspace,
        box=ctx.tidings.secret_box,
        data={"url": body.target_url, "events": [body.event], "description": "REST hook"},
        origin="rest_hook",
        now=ctx.now,
        reachable=_reachable(ctx),
    )
    return HookRead(
        id=subscription.id, target_url=subscription.url, event=body.event, secret=secret
    )


@router.delete("/hooks/{hook_id}", status_code=204)
def unsubscribe_hook(hook_id: int, ctx: Context) -> Response:
    ctx.require(Role.ADMIN, action="deleting webhook subscriptions")
    service.delete_subscription(ctx.session, ctx.workspace, hook_id)
    return Response(status_code=204)


@router.get("/hooks/recent/{event}")
def recent_events(
    event: str, ctx: Context, limit: int = Query(25, ge=1, le=service.RECENT_MAX)
) -> list[dict[str, object]]:
    """The newest events of a type, newest first, in the body deliveries have: for polling
    triggers and for the sample a Zap editor shows."""
    return service.recent(ctx.session, workspace=ctx.workspace, event=event, limit=limit)
