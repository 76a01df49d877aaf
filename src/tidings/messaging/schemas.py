"""Request and response bodies of the inbox, messages, quick replies and traces."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tidings.kernel.timestamps import Timestamp
from tidings.messaging.domain import Purpose, UncertainDecision

MAX_NOTE_CHARACTERS = 10_000  # a team note; longer text belongs in a file


class ConversationRead(BaseModel):
    id: int
    contact_id: int
    number_id: int
    status: str
    snoozed_until: Timestamp | None
    assignee_id: int | None
    team_id: int | None
    labels: list[str]
    contact_name: str | None = None
    contact_phone: str | None = None
    unread_count: int
    last_inbound_at: Timestamp | None
    last_message_at: Timestamp | None
    window_open: bool = Field(description="P1: free-form messages allowed now")
    window_closes_at: Timestamp | None = Field(
        None, description="when the 24-hour window closes (or closed), from the last inbound"
    )
    automation_paused_until: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class ConversationPage(BaseModel):
    items: list[ConversationRead]
    next_cursor: str | None


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    channel: str = Field("whatsapp", description="whatsapp or email")
    conversation_id: int | None = Field(None, description="WhatsApp messages")
    contact_id: int
    number_id: int | None = Field(None, description="WhatsApp messages")
    sender_id: int | None = Field(None, description="e-mails: the sender identity")
    direction: str
    kind: str
    text: str | None
    content: dict[str, Any]
    status: str
    status_reason: str | None
    provider_message_id: str | None
    reply_to: str | None
    origin: str | None
    purpose: str | None
    author_id: int | None
    attempts: int
    error_code: int | None
    error_title: str | None
    error_details: str | None
    next_attempt_at: Timestamp | None
    pricing_category: str | None = Field(None, description="the category WhatsApp charged as")
    cost: float | None = Field(None, description="once delivered, by the rate card (P9)")
    cost_currency: str | None = None
    sent_at: Timestamp | None
    delivered_at: Timestamp | None
    read_at: Timestamp | None
    failed_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class MessagePage(BaseModel):
    items: list[MessageRead]
    next_cursor: str | None


class ReplyIn(BaseModel):
    """Exactly one of ``text``, ``content`` (a Cloud API message object) or ``quick_reply``."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, examples=["Shipping to Chiang Mai takes 2 days."])
    content: dict[str, Any] | None = Field(
        None, examples=[{"type": "image", "image": {"link": "https://example.com/a.jpg"}}]
    )
    quick_reply: str | None = Field(
        None, description="shortcut of a quick reply", examples=["ship"]
    )
    reply_to: str | None = Field(None, description="WhatsApp id of the message to quote")
    idempotency_key: str | None = Field(None, max_length=300)

    @model_validator(mode="after")
    def _one_body(self) -> ReplyIn:
        given = [v for v in (self.text, self.content, self.quick_reply) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of text, content or quick_reply")
        return self


class SendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: int
    content: dict[str, Any]
    number_id: int | None = None
    purpose: Purpose = Purpose.SERVICE
    idempotency_key: str | None = Field(None, max_length=300)
    notification_type: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9_.-]+$",
        description="service notifications of one type are kept 6 h apart (P4): parcel_update",
    )


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee_id: int | None = None
    team_id: int | None = None


class SnoozeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: Timestamp


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str = Field(examples=["pending"])


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=MAX_NOTE_CHARACTERS)


class NoteRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    conversation_id: int
    author_id: int | None
    author_label: str
    body: str
    created_at: Timestamp


class LabelsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[str] = Field(min_length=1, max_length=50)


class QuickReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shortcut: str | None = Field(None, examples=["ship"])
    title: str | None = Field(None, examples=["Shipping cost"])
    body: str | None = Field(
        None, examples=["Hi {{ contact.first_name }}, shipping is free over 1,000 THB."]
    )


class QuickReplyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    shortcut: str
    title: str
    body: str
    created_at: Timestamp
    updated_at: Timestamp


class RenderedReply(BaseModel):
    text: str


class TraceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    message_id: int | None
    contact_id: int
    outcome: str
    reason: str
    provider_code: int | None
    at: Timestamp


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number_id: int | None = Field(None, description="the workspace's first number by default")
    name: str
    language: str = Field(description="en, th, zh_TW …")
    category: str = Field(description="marketing, utility or authentication")
    components: list[dict[str, Any]] = Field(
        description='Meta\'s component objects: {"type": "BODY", "text": "Hi {{1}}"} …'
    )


class TemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    number_id: int
    name: str
    language: str
    category: str
    status: str
    components: list[Any]
    source: str
    synced_at: Timestamp | None
    updated_at: Timestamp


class TemplateSyncRead(BaseModel):
    added: int
    updated: int
    unchanged: int
    gone: int = Field(description="synced before, no longer listed: marked disabled")


class CostReportRead(BaseModel):
    currency: str
    total: float
    by_category: dict[str, dict[str, int | float]] = Field(
        description="category → messages (count) and cost"
    )
    paid_conversations: int
    cost_per_conversation: float | None
    customers_acquired: int = Field(
        description="contacts whose first order.placed is in the period"
    )
    cost_per_acquisition: float | None


class ActivityRead(BaseModel):
    timezone: str
    grid: list[list[int]] = Field(
        description="customer messages by weekday (Monday first) and hour, workspace time"
    )
    inbound: int
    outbound: int


class AgentResponseRead(BaseModel):
    agent_id: int
    answered: int
    median_seconds: float
    mean_seconds: float
    within_target: int = Field(description="answers within target_seconds")
    slow: bool = Field(description="the mean is above slow_after_seconds (R1)")


class ResponseTimesRead(BaseModel):
    target_seconds: int
    slow_after_seconds: int
    agents: list[AgentResponseRead]


class UncertainRead(BaseModel):
    """A message that may or may not have reached the customer: its request left, and no
    answer came back (a timeout, a worker that died mid-send)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    contact_id: int
    number_id: int | None
    channel: str
    recipient: str | None = Field(description="to whom it went")
    kind: str
    text: str | None = Field(description="what it said (or the template's name)")
    purpose: str | None
    origin: str | None
    wire_at: Timestamp | None = Field(description="when its request left for the provider")
    attempts: int
    status_reason: str | None
    created_at: Timestamp


class UncertainPage(BaseModel):
    items: list[UncertainRead]
    total: int
    next_cursor: str | None


class UncertainDecisionIn(BaseModel):
    """``sent``: the customer has it, never resend; ``resend``: it did not arrive, send it
    again. For the listed ``ids``, or every uncertain message with ``all``."""

    model_config = ConfigDict(extra="forbid")

    decision: UncertainDecision
    ids: list[int] | None = Field(None, examples=[[41, 42]])
    all: bool = False


class UncertainDecided(BaseModel):
    decided: list[int]
