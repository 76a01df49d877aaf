"""Request and response bodies of contacts, tags, lists, custom fields and events."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tidings.contacts.domain import (
    Channel,
    ConsentPurpose,
    ConsentStatus,
    CustomFieldType,
    LifecycleStage,
)
from tidings.kernel.timestamps import Timestamp

MAX_CUSTOM_FIELDS = 100
MAX_CUSTOM_VALUE_BYTES = 4096
MAX_EVENT_PROPERTIES_BYTES = 16_384


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel
    purpose: ConsentPurpose
    status: ConsentStatus
    source: str | None = Field(None, max_length=64, description="form, api, import, inbound …")


class ConsentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: Channel
    purpose: ConsentPurpose
    status: ConsentStatus
    source: str
    recorded_at: Timestamp


class ContactFields(BaseModel):
    """Fields a client may set; phones and e-mails are normalised by the service (C2)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = Field(None, examples=["0912 345 678", "+85291234567"])
    email: str | None = None
    locale: str | None = Field(None, examples=["zh-Hant-TW", "th-TH", "en"])
    timezone: str | None = Field(None, examples=["Asia/Taipei"])
    country: str | None = Field(None, examples=["TW"])
    lifecycle_stage: LifecycleStage | None = None
    score: int | None = None
    custom_fields: dict[str, Any] | None = Field(
        None, description=f"at most {MAX_CUSTOM_FIELDS} fields, each value under 4 KB as JSON"
    )
    lead_source: str | None = None
    do_not_contact: bool | None = None

    @field_validator("custom_fields")
    @classmethod
    def _custom_fields_fit(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        if len(value) > MAX_CUSTOM_FIELDS:
            raise ValueError(f"at most {MAX_CUSTOM_FIELDS} custom fields at once")
        for key, item in value.items():
            if len(orjson.dumps(item)) > MAX_CUSTOM_VALUE_BYTES:
                raise ValueError(f"{key!r}: a value is at most {MAX_CUSTOM_VALUE_BYTES} bytes")
        return value


class ContactCreate(ContactFields):
    tags: list[str] = []
    list_ids: list[int] = []
    external_ids: dict[str, str] = {}
    consents: list[ConsentIn] = []


class ContactUpdate(ContactCreate):
    """Only the fields sent change; tags, lists, ids and consents given are added."""


class ContactUpsert(ContactCreate):
    match_on: list[str] = Field(
        default=["external_id", "phone", "email"],
        description="Keys tried in order to find the contact to update.",
    )
    updated_at: Timestamp | None = Field(
        None,
        description=(
            "When the record changed in your system. Given, newer wins field by field: a field"
            " changed here later keeps its value, and yours waits in the review queue"
            " (/sync/conflicts); an empty field is always filled. Absent: every field is taken."
        ),
        examples=["2026-11-24T09:00:00.123Z"],
    )


class ContactRead(BaseModel):
    id: int
    name: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    email: str | None
    locale: str | None
    timezone: str | None
    country: str | None
    lifecycle_stage: LifecycleStage
    score: int
    custom_fields: dict[str, Any]
    lead_source: str | None
    do_not_contact: bool
    activity_score: int = Field(description="0-100 from recency, frequency, enquiries (A7)")
    sentiment: float | None = Field(description="of the latest message: 0 angry … 1 delighted")
    churn_risk: bool
    tags: list[str]
    list_ids: list[int]
    consents: list[ConsentRead]
    external_ids: dict[str, str]
    created_at: Timestamp
    updated_at: Timestamp


class UpsertResult(BaseModel):
    created: bool
    contact: ContactRead
    kept: list[str] = Field(
        default=[],
        description=(
            "Fields changed here after the record's updated_at: they kept their value, and"
            " yours waits in the review queue"
        ),
    )


class ContactPage(BaseModel):
    items: list[ContactRead]
    next_cursor: str | None


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(min_length=1)


class TagRead(BaseModel):
    id: int
    name: str
    contacts: int
    created_at: Timestamp


class ListIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""


class ListRead(BaseModel):
    id: int
    name: str
    description: str
    contacts: int
    created_at: Timestamp


class MembershipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    list_id: int


class CustomFieldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    label: str = ""
    type: CustomFieldType
    choices: list[str] | None = None


class CustomFieldRead(BaseModel):
    key: str
    label: str
    type: CustomFieldType
    choices: list[str] | None
    created_at: Timestamp


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(examples=["order.placed", "product.viewed", "link.clicked"])
    occurred_at: Timestamp | None = Field(None, description="When it happened; defaults to now.")
    properties: dict[str, Any] = Field(default_factory=dict, description="at most 16 KB as JSON")
    idempotency_key: str | None = Field(None, max_length=200)

    @field_validator("properties")
    @classmethod
    def _properties_fit(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(orjson.dumps(value))
        if size > MAX_EVENT_PROPERTIES_BYTES:
            raise ValueError(
                f"properties take {size} bytes as JSON; at most {MAX_EVENT_PROPERTIES_BYTES}"
            )
        return value


class EventRead(BaseModel):
    id: int
    contact_id: int
    type: str
    occurred_at: Timestamp
    received_at: Timestamp
    source: str
    properties: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventRead]
    next_cursor: str | None


class ImportProblem(BaseModel):
    line: int
    column: str
    value: str
    code: str
    message: str


class ImportResult(BaseModel):
    rows: int
    created: int
    updated: int
    unchanged: int
    failed: int
    warnings: list[str]
    problems: list[ImportProblem]


class ImportJobRead(BaseModel):
    """A CSV import running in the background: where it stands and what it did so far."""

    id: int
    status: str = Field(description="queued, running, done or failed")
    file_name: str | None
    size_bytes: int
    rows: int = Field(description="data rows read so far")
    created: int
    updated: int
    unchanged: int
    failed: int = Field(description="rows refused; the first 500 are in problems")
    warnings: list[str]
    problems: list[ImportProblem]
    error: str | None = Field(description="why the file stopped, when it failed")
    error_field: str | None = Field(description="where: the line")
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None


class ImportJobPage(BaseModel):
    items: list[ImportJobRead]
    next_cursor: str | None


class DuplicateRead(BaseModel):
    first: ContactRead
    second: ContactRead
    name_similarity: float
    reasons: list[str]


class DuplicatesPage(BaseModel):
    items: list[DuplicateRead]
    compared_pairs: int
    skipped_blocks: int = Field(description="name or e-mail keys too common to compare within")


class MergeIn(BaseModel):
    survivor_id: int = Field(description="the contact that stays")
    merged_id: int = Field(description="the contact merged into it (it disappears)")
    reasons: list[str] = Field(default_factory=list, max_length=20)


class MergeRead(BaseModel):
    id: int
    survivor_id: int
    merged_id: int
    reasons: list[str]
    merged_by: str
    merged_at: Timestamp
    undone_at: Timestamp | None
    restored_id: int | None
    moved_rows: int
    removed_duplicates: int
