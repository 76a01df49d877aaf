"""Requests and answers of the broadcasts API."""

from __future__ import annotations

from datetime import date, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tidings.kernel.timestamps import Timestamp


class BroadcastIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    purpose: str = Field("marketing", description="marketing or utility")
    number_id: int | None = Field(None, description="the workspace's first number by default")
    template: dict[str, Any] = Field(
        description="an approved template: name, language {code}, components; a text "
        'parameter may be {"type": "text", "field": "first_name", "fallback": "friend"}'
    )
    audience: dict[str, Any] = Field(
        default_factory=dict,
        description="tags (all of), exclude_tags, list_id, lifecycle_stage, fields {key: value},"
        ' condition (the condition language, e.g. {"in_segment": "High intent"})',
    )
    send_at: Timestamp | None = Field(None, description="when to send; now by default")
    local_date: date | None = Field(None, description="with local_time: in each contact's zone")
    local_time: time | None = None
    dry_run: bool = Field(False, description="only estimate the audience and the load")


class ForecastRead(BaseModel):
    decided: int = Field(
        description="recipients decided one by one; beyond them their shares are applied to all"
    )
    outcomes: dict[str, int] = Field(description="queued, deferred and skipped recipients")
    reasons: dict[str, dict[str, int]] = Field(
        description="deferred and skipped recipients by the sending policy's reason"
    )
    first_send_at: Timestamp | None = Field(description="the earliest moment a message goes")
    last_send_at: Timestamp | None


class EstimateRead(BaseModel):
    recipients: int
    expected_interactions: int
    daily_limit: int
    batches: int
    batch_size: int
    batch_every_seconds: int
    reason: str
    expected_cost: float = Field(description="if every message is delivered (P9)")
    currency: str
    forecast: ForecastRead = Field(
        description="what the sending policy will decide, as planning will decide it"
    )


class BroadcastRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    number_id: int
    purpose: str
    template: dict[str, Any]
    audience: dict[str, Any]
    status: str
    send_at: Timestamp
    local_date: date | None
    local_time: time | None
    batch_size: int
    batch_every_seconds: int
    plan_reason: str | None
    recipients: int
    created_by: str
    created_at: Timestamp
    finished_at: Timestamp | None


class BroadcastCreated(BaseModel):
    broadcast: BroadcastRead | None
    estimate: EstimateRead


class StatisticsRead(BaseModel):
    outcomes: dict[str, int] = Field(description="messages per status")
    reasons: dict[str, dict[str, int]] = Field(
        description="skipped, deferred, failed: reason → count"
    )
    cost: float = Field(description="of its delivered messages so far (P9)")
