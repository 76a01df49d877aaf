"""Request and response bodies of WhatsApp numbers; secrets go in, never out."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tidings.channels.domain import DEFAULT_API_VERSION, DEFAULT_GRAPH_URL
from tidings.kernel.patches import Patch
from tidings.kernel.timestamps import Timestamp


class NumberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    phone_number_id: str = Field(examples=["106540352242922"])
    business_account_id: str = Field(examples=["102290129340398"])
    display_phone_number: str = Field(examples=["+852 3000 1234"])
    access_token: str
    app_secret: str
    verify_token: str = Field(description="The token you also enter in Meta's webhook settings.")
    api_base_url: str = Field(DEFAULT_GRAPH_URL, description="Meta, Prism or the local simulator.")
    api_version: str = DEFAULT_API_VERSION


class NumberUpdate(Patch):
    name: str | None = None
    access_token: str | None = None
    app_secret: str | None = None
    verify_token: str | None = None
    api_base_url: str | None = None
    api_version: str | None = None
    is_active: bool | None = None


class NumberRead(BaseModel):
    id: int
    name: str
    phone_number_id: str
    business_account_id: str
    display_phone_number: str
    api_base_url: str
    api_version: str
    is_active: bool
    webhook_url: str
    created_at: Timestamp
    updated_at: Timestamp


class MediaUploaded(BaseModel):
    id: str = Field(description="use as content.<kind>.id when sending")
    kind: str
    mime_type: str
    size: int


class QuarantinedUpdate(BaseModel):
    """A webhook update kept aside because it could not be understood or kept failing."""

    id: int
    number_id: int
    kind: str = Field(description="message, status, problem, other, or delivery (a whole POST)")
    key: str = Field(description="what it is filed under: message:<wamid>, status:<wamid>:…")
    reason: str | None
    attempts: int
    received_at: Timestamp
    quarantined_at: Timestamp
    raw: dict[str, Any] = Field(description="the update as Meta sent it (one per update)")


class QuarantinePage(BaseModel):
    items: list[QuarantinedUpdate]
    total: int
    next_cursor: str | None


class ReplayRequest(BaseModel):
    """Replay the listed updates, or every quarantined one of the workspace with ``all``."""

    model_config = ConfigDict(extra="forbid")

    ids: list[int] | None = Field(None, examples=[[12, 13]])
    all: bool = False


class ReplayResult(BaseModel):
    replayed: int
