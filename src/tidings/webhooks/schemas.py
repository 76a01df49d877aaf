"""JSON bodies of the webhooks API, and of the REST-hook shape Zapier and Make use."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, Field

from tidings.kernel.timestamps import Timestamp


class SubscriptionIn(BaseModel):
    url: str | None = Field(None, description="https://… that receives the events (POST)")
    events: list[str] | None = Field(
        None, description='catalogue names, a family such as "order.*", or ["*"]'
    )
    description: str | None = None
    active: bool | None = None


class SubscriptionRead(BaseModel):
    id: int
    url: str
    events: list[str]
    description: str
    active: bool
    origin: str
    retries: int
    retry_interval_seconds: int
    disabled_reason: str | None
    last_success_at: Timestamp | None
    last_failure_at: Timestamp | None
    created_at: Timestamp


class SubscriptionCreated(SubscriptionRead):
    secret: str = Field(description="signs every delivery; shown only now (rotate for a new one)")


class SecretRead(BaseModel):
    secret: str


class DeliveryRead(BaseModel):
    id: int
    subscription_id: int
    event_id: str
    event_type: str
    state: str
    attempts: int
    replays: int
    next_attempt_at: Timestamp | None
    last_status_code: int | None
    last_error: str | None
    duration_ms: int | None
    created_at: Timestamp
    delivered_at: Timestamp | None
    payload: dict[str, Any]


class ReplayedRead(BaseModel):
    replayed: int


class HealthRead(BaseModel):
    delivered: int
    dead: int
    pending: int
    success_rate: float | None
    median_ms: int | None
    p95_ms: int | None
    oldest_pending_seconds: int | None


class EventTypeRead(BaseModel):
    name: str
    description: str


class HookIn(BaseModel):
    """Zapier's and Make's subscribe call: one address, one event."""

    target_url: str = Field(
        validation_alias=AliasChoices("target_url", "targetUrl", "hookUrl", "url")
    )
    event: str


class HookRead(BaseModel):
    id: int
    target_url: str
    event: str
    secret: str
