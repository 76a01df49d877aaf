"""Request and response bodies of workspaces, agents and API keys."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tidings.kernel.patches import Patch
from tidings.kernel.timestamps import Timestamp
from tidings.workspaces.domain import Role


class WorkspaceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    slug: str
    name: str
    default_region: str
    timezone: str
    locale: str
    policy: dict[str, Any]
    policy_overrides: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp


class WorkspaceUpdate(Patch):
    name: str | None = None
    default_region: str | None = None
    timezone: str | None = None
    locale: str | None = None
    policy: dict[str, Any] | None = Field(None, description="Overrides of the policy figures.")


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str
    name: str
    role: Role = Role.AGENT
    password: str | None = None


class AgentUpdate(Patch):
    name: str | None = None
    role: Role | None = None
    password: str | None = None
    is_active: bool | None = None


class AgentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    role: Role
    is_active: bool
    created_at: Timestamp


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    role: Role = Role.ADMIN


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    prefix: str
    created_at: Timestamp
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="Shown this once; only a digest is stored.")


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(examples=["Bangkok support"])


class TeamRead(BaseModel):
    id: int
    name: str
    member_ids: list[int]
    created_at: Timestamp


class SignInRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    address: str | None = Field(description="the client's address, as the server saw it")
    outcome: str = Field(description="signed_in, failed, or throttled (refused unchecked)")
    at: Timestamp


class SignInPage(BaseModel):
    items: list[SignInRead]
    next_cursor: str | None
