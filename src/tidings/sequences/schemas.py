"""Requests and answers of the sequences API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tidings.kernel.timestamps import Timestamp


class SequenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: dict[str, Any] = Field(
        description="the sequence in the format of docs/sequences.md (tidings.sequence/v1)"
    )
    status: str = Field("draft", description="draft or active")


class SequenceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: str
    current_version: int
    created_at: Timestamp
    updated_at: Timestamp
    enrollments: dict[str, int] = Field(
        default_factory=dict, description="enrollments by status (in the list)"
    )


class SequenceDetail(SequenceRead):
    definition: dict[str, Any]
    winners: dict[str, str] = Field(
        default_factory=dict, description="split step id → the branch chosen after its test"
    )


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(description="active, paused or archived")


class EnrollIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact_ids: list[int] = Field(min_length=1, max_length=10_000)


class EnrollRead(BaseModel):
    enrolled: list[int]
    refused: dict[int, str]


class EnrollmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    contact_id: int
    version_id: int
    status: str
    step_id: str
    due_at: Timestamp | None
    enrolled_at: Timestamp
    ended_at: Timestamp | None
    end_reason: str | None
    converted_at: Timestamp | None
    source: str


class MigrateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_version: int = Field(ge=1)
    mapping: dict[str, str] = Field(
        default_factory=dict, description="old step id → new step id; same ids map by default"
    )
    dry_run: bool = True


class MigrationRead(BaseModel):
    moved: dict[str, dict[str, int]]
    kept: dict[str, int]
    dry_run: bool


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    definition: dict[str, Any] | None = Field(None, description="a definition to try")
    sequence_id: int | None = Field(None, description="or a stored sequence's current version")
    behaviours: list[str] = Field(default_factory=list, max_length=20)
    contact: dict[str, Any] = Field(
        default_factory=dict, description="the test lead: first_name, timezone, fields …"
    )
    start: Timestamp | None = None


class EntryRead(BaseModel):
    at: Timestamp
    step_id: str | None
    kind: str
    text: str


class PreviewRead(BaseModel):
    entries: list[EntryRead]
    ended: str | None
    end_reason: str | None


class ImportRead(BaseModel):
    sequence: SequenceRead
    templates_defined: list[str]
    templates_without_number: list[str]
    email_templates_defined: list[str]
