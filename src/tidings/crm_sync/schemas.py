"""JSON bodies of the CRM sync API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tidings.kernel.timestamps import Timestamp


class ConnectorIn(BaseModel):
    name: str | None = Field(None, description="e.g. hubspot; also the contacts' id system")
    kind: str | None = Field(None, description="custom or hubspot")
    mapping: dict[str, Any] | None = Field(
        None,
        description='{"contact": [{"source": "customer_level", "target": '
        '"custom_fields.level", "default": "new customer"}, …]}',
    )


class ConnectorRead(BaseModel):
    id: int
    name: str
    kind: str
    mapping: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp


class BatchIn(BaseModel):
    records: list[Any] = Field(
        description='[{"external_id": "…", "updated_at": "2026-11-24T09:00:00.123Z", '
        '"fields": {…}}, …] (1-1,000)'
    )


class RecordResultRead(BaseModel):
    position: int
    external_id: str | None
    outcome: str
    local_id: int | None
    conflicts: int
    errors: list[dict[str, str | None]]


class BatchRead(BaseModel):
    object_type: str
    received: int
    created: int
    updated: int
    unchanged: int
    stale: int
    rejected: int
    conflicts: int
    results: list[RecordResultRead]


class RecordRead(BaseModel):
    external_id: str
    object_type: str
    contact_id: int | None
    remote_updated_at: Timestamp
    values: dict[str, Any]
    updated_at: Timestamp


class ConflictRead(BaseModel):
    id: int
    connector_id: int | None = Field(description="None: from the API's dated upsert")
    object_type: str
    external_id: str | None
    contact_id: int | None
    field: str
    ours: Any
    theirs: Any
    winner: str
    ours_at: Timestamp
    theirs_at: Timestamp
    state: str
    created_at: Timestamp
    resolved_at: Timestamp | None


class MappingErrorRead(BaseModel):
    id: int
    object_type: str
    external_id: str | None
    position: int
    field: str | None
    reason: str
    created_at: Timestamp


class SyncHealthRead(BaseModel):
    success_rate: float | None = Field(
        description="records taken without an error, of those received"
    )
    backlog: dict[str, Any] | None = Field(
        None, description="CRM connectors: changes waiting to go out, and the oldest's wait"
    )
    received: int
    created: int
    updated: int
    unchanged: int
    stale: int
    rejected: int
    with_errors: int
    error_rate: float | None
    conflicts: int
    open_conflicts: int
    batches: int
    median_batch_ms: int | None
    last_batch_at: Timestamp | None
