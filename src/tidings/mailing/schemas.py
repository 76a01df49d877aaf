"""Requests and answers of the e-mail API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from tidings.kernel.patches import Patch
from tidings.kernel.timestamps import Timestamp


class SenderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="how the workspace calls it")
    from_name: str = Field(min_length=1, max_length=200, description="the From display name")
    from_address: EmailStr
    reply_to: EmailStr | None = None
    smtp_host: str = Field(min_length=1, max_length=255)
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: str = Field("starttls", description="none, starttls or tls")
    smtp_username: str | None = Field(None, max_length=320)
    smtp_password: str | None = Field(None, max_length=1000, description="kept sealed")
    connections: int = Field(4, ge=1, le=64, description="parallel SMTP connections at most")
    dkim_domain: str | None = Field(None, max_length=255)
    dkim_selector: str | None = Field(None, max_length=63)
    dkim_private_key: str | None = Field(None, max_length=20_000, description="PEM; kept sealed")
    is_default: bool = False
    is_active: bool = True


class SenderUpdate(Patch):
    clearable = frozenset(
        {
            "reply_to",
            "smtp_username",
            "smtp_password",
            "dkim_domain",
            "dkim_selector",
            "dkim_private_key",
        }
    )

    name: str | None = Field(None, min_length=1, max_length=100)
    from_name: str | None = Field(None, min_length=1, max_length=200)
    from_address: EmailStr | None = None
    reply_to: EmailStr | None = None
    smtp_host: str | None = Field(None, min_length=1, max_length=255)
    smtp_port: int | None = Field(None, ge=1, le=65535)
    smtp_security: str | None = None
    smtp_username: str | None = Field(None, max_length=320)
    smtp_password: str | None = Field(None, max_length=1000)
    connections: int | None = Field(None, ge=1, le=64)
    dkim_domain: str | None = Field(None, max_length=255)
    dkim_selector: str | None = Field(None, max_length=63)
    dkim_private_key: str | None = Field(None, max_length=20_000)
    is_default: bool | None = None
    is_active: bool | None = None


class SenderRead(BaseModel):
    id: int
    name: str
    from_name: str
    from_address: str
    reply_to: str | None
    smtp_host: str
    smtp_port: int
    smtp_security: str
    smtp_username: str | None
    has_password: bool
    connections: int
    dkim_domain: str | None
    dkim_selector: str | None
    has_dkim_key: bool
    is_default: bool
    is_active: bool
    created_at: Timestamp
    updated_at: Timestamp


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=300)
    html: str = Field(min_length=1, max_length=500_000)
    text: str | None = Field(
        None, max_length=500_000, description="generated from the HTML when absent"
    )


class TemplateUpdate(Patch):
    clearable = frozenset({"text"})  # the text part is then made from the HTML

    name: str | None = Field(None, min_length=1, max_length=200)
    subject: str | None = Field(None, min_length=1, max_length=300)
    html: str | None = Field(None, min_length=1, max_length=500_000)
    text: str | None = Field(None, max_length=500_000)


class TemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    subject: str
    html: str
    text: str | None
    created_at: Timestamp
    updated_at: Timestamp


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: int


class PreviewRead(BaseModel):
    subject: str
    html: str
    text: str
    links: list[str]


class EmailIn(BaseModel):
    """One e-mail to one contact: a stored template by name, or subject and bodies."""

    model_config = ConfigDict(extra="forbid")

    contact_id: int
    template: str | None = Field(None, description="an e-mail template's name")
    subject: str | None = Field(None, min_length=1, max_length=300)
    html: str | None = Field(None, min_length=1, max_length=500_000)
    text: str | None = Field(None, max_length=500_000)
    purpose: str = Field("marketing", description="marketing, utility or service")
    sender_id: int | None = Field(None, description="the default sender when absent")
    idempotency_key: str | None = Field(None, max_length=300)


class SuppressionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    address: str
    reason: str
    smtp_code: int | None
    message_id: int | None
    created_at: Timestamp
