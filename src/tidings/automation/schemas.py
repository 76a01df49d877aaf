"""JSON bodies of the automation API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tidings.kernel.timestamps import Timestamp


class SegmentIn(BaseModel):
    name: str | None = Field(None, description="required when creating")
    description: str | None = None
    condition: dict[str, Any] | None = Field(
        None, description='the condition language: {"all": [{"has_tag": "vip"}, …]}'
    )


class SegmentRead(BaseModel):
    id: int
    name: str
    description: str
    condition: dict[str, Any]
    member_count: int
    refreshed_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class SegmentMemberRead(BaseModel):
    contact_id: int
    entered_at: Timestamp


class MembersPage(BaseModel):
    items: list[SegmentMemberRead]
    next_after_id: int | None


class RefreshRead(BaseModel):
    entered: int
    left: int
    member_count: int


class CountIn(BaseModel):
    condition: dict[str, Any]


class CountRead(BaseModel):
    contacts: int


class KeywordGroupIn(BaseModel):
    terms: list[Any] = Field(description="words or phrases in any language")


class KeywordGroupRead(BaseModel):
    name: str
    terms: list[str]
    updated_at: Timestamp


class DetectIn(BaseModel):
    text: str = Field(max_length=4096)


class DetectRead(BaseModel):
    words: list[str]
    keywords: list[str]


class RuleIn(BaseModel):
    name: str | None = None
    enabled: bool | None = None
    definition: dict[str, Any] | None = Field(
        None, description="trigger, condition, actions, guard"
    )


class RuleRead(BaseModel):
    id: int
    name: str
    enabled: bool
    definition: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp


class RuleRunRead(BaseModel):
    id: int
    rule_id: int
    contact_id: int
    event_id: int | None
    status: str = Field(description="fired, not_matched, skipped (loop guard) or failed")
    reason: str
    actions_done: dict[str, Any]
    depth: int
    created_at: Timestamp


class StoreIn(BaseModel):
    name: str | None = None
    address: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    hours: dict[str, Any] | None = Field(None, description='{"mon": "10:00-21:00", …}')
    phone: str | None = None
    map_url: str | None = None


class StoreRead(BaseModel):
    id: int
    name: str
    address: str
    latitude: float
    longitude: float
    hours: dict[str, str]
    phone: str | None
    map_url: str | None
    updated_at: Timestamp


class IntentRead(BaseModel):
    intent: str | None
    score: float
    cues: list[str]


class ProductIn(BaseModel):
    sku: str | None = None
    name: str | None = None
    aliases: list[str] | None = Field(
        None, description='other names: "iPhone15 Pro Max", "ไอโฟน 15 โปรแม็กซ์", "苹果15 Pro Max"'
    )
    price: str | None = Field(None, description="decimal text, e.g. 1290.50")
    currency: str | None = Field(None, description="ISO 4217, e.g. THB")
    url: str | None = None


class ProductRead(BaseModel):
    id: int
    sku: str
    name: str
    aliases: list[str]
    price: str | None
    currency: str | None
    url: str | None
    updated_at: Timestamp


class SkuRead(BaseModel):
    name: str
    sku: str | None
