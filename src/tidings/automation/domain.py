"""Rules (A1): a trigger, a condition, actions, and the guard that keeps rules from triggering
each other forever. Pure: parsing, matching an event to a trigger, and the guard's verdict.

A rule file or API body::

    {"name": "Price-sensitive",
     "trigger": {"on": "keyword", "keyword": "discount"},
     "condition": {"keyword": "discount", "at_least": 4, "within": "30d"},
     "actions": [{"do": "add_tag", "tag": "price-sensitive"},
                 {"do": "reply", "text": "{{ contact.first_name }}, use DISCOUNT10 for 10% off"}],
     "guard": {"times": 1, "per": "30d"}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from tidings.conditions.domain import (
    INTENT_EVENT,
    KEYWORD_EVENT,
    Condition,
    Duration,
    fold,
    properties_match,
    step_conditions,
    tag_identity,
)

_STRICT = ConfigDict(extra="forbid", frozen=True)
MAX_DEPTH = 3  # a rule's action may trigger rules, whose actions may trigger rules, then stop
Name = Annotated[str, Field(min_length=1, max_length=200)]
LANGUAGE_TAG = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$"


# --- triggers -----------------------------------------------------------------------------------


class OnMessage(BaseModel):
    model_config = _STRICT
    on: Literal["message_received"]


class OnKeyword(BaseModel):
    model_config = _STRICT
    on: Literal["keyword"]
    keyword: str = Field(min_length=1, max_length=64)


class OnIntent(BaseModel):
    model_config = _STRICT
    on: Literal["intent"]
    intent: str = Field(min_length=1, max_length=64)


class OnTag(BaseModel):
    model_config = _STRICT
    on: Literal["tag_added", "tag_removed"]
    tag: str = Field(min_length=1, max_length=100)


class OnFieldChange(BaseModel):
    model_config = _STRICT
    on: Literal["field_changed"]
    field: str = Field(min_length=1, max_length=64)


class OnEvent(BaseModel):
    model_config = _STRICT
    on: Literal["event"]
    event: str = Field(pattern=r"^[^\s]{1,64}$")
    where: dict[str, str | int | float | bool] = Field(default_factory=dict)


class OnSegment(BaseModel):
    model_config = _STRICT
    on: Literal["segment_entered", "segment_left"]
    segment: Name


class OnSchedule(BaseModel):
    """Every ``every`` (1 hour to 4 weeks), for every contact the rule's condition matches
    then; ``at`` aligns the runs to a local time of the workspace, ``weekday`` weekly runs to
    a day."""

    model_config = _STRICT
    on: Literal["schedule"]
    every: Duration
    at: time | None = None
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] | None = None

    @model_validator(mode="after")
    def _sensible(self) -> OnSchedule:
        if not timedelta(hours=1) <= self.every <= timedelta(weeks=4):
            raise ValueError("every: from 1h to 4w")
        if self.weekday is not None and self.every != timedelta(weeks=1):
            raise ValueError("weekday goes with every: 1w")
        return self


Trigger = Annotated[
    OnMessage | OnKeyword | OnIntent | OnTag | OnFieldChange | OnEvent | OnSegment | OnSchedule,
    Field(discriminator="on"),
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def next_run(trigger: OnSchedule, after: datetime, zone: ZoneInfo) -> datetime:
    """The first run of a scheduled rule strictly after ``after`` (UTC). With ``at``, runs
    keep that local wall-clock time across daylight-saving changes."""
    if trigger.at is None:
        return after + trigger.every
    local = after.astimezone(zone)
    candidate = datetime.combine(local.date(), trigger.at, tzinfo=zone)
    if trigger.weekday is not None:
        candidate += timedelta(days=(WEEKDAYS.index(trigger.weekday) - candidate.weekday()) % 7)
    while candidate <= local:
        candidate += trigger.every  # same-zone arithmetic: wall-clock time is kept
    return candidate.astimezone(UTC)


TRIGGER_EVENTS = {
    "message_received": "message.received",
    "keyword": KEYWORD_EVENT,
    "intent": INTENT_EVENT,
    "tag_added": "tag.added",
    "tag_removed": "tag.removed",
    "field_changed": "contact.updated",
    "segment_entered": "segment.entered",
    "segment_left": "segment.left",
}


def event_type_of(trigger: Any) -> str:
    """The timeline event type that can fire this trigger ("" for a schedule: none)."""
    if isinstance(trigger, OnEvent):
        return trigger.event
    return TRIGGER_EVENTS.get(trigger.on, "")


def fires(trigger: Any, event_type: str, properties: Mapping[str, Any]) -> bool:
    """Whether a timeline event fires the trigger."""
    if event_type != event_type_of(trigger):
        return False
    match trigger:
        case OnKeyword():
            return fold(str(properties.get("keyword", ""))) == fold(trigger.keyword)
        case OnIntent():
            return str(properties.get("intent", "")) == trigger.intent
        case OnTag():
            return tag_identity(str(properties.get("tag", ""))) == tag_identity(trigger.tag)
        case OnFieldChange():
            return trigger.field in (properties.get("fields") or ())
        case OnEvent():
            return properties_match(trigger.where, properties)
        case OnSegment():
            return fold(str(properties.get("segment", ""))) == fold(trigger.segment)
    return True


# --- actions ------------------------------------------------------------------------------------


class ChangeTag(BaseModel):
    model_config = _STRICT
    do: Literal["add_tag", "remove_tag"]
    tag: str = Field(min_length=1, max_length=100)


class ChangeList(BaseModel):
    model_config = _STRICT
    do: Literal["join_list", "leave_list"]
    list: Name


class SetField(BaseModel):
    model_config = _STRICT
    do: Literal["set_field"]
    field: str = Field(min_length=1, max_length=64)
    value: str | int | float | bool | None


class AddScore(BaseModel):
    model_config = _STRICT
    do: Literal["add_score"]
    by: int = Field(ge=-1000, le=1000)


class Assign(BaseModel):
    """Assign the contact's conversation to an agent (by e-mail) and/or a team (by name)."""

    model_config = _STRICT
    do: Literal["assign"]
    agent: str | None = Field(None, max_length=320)
    team: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _someone(self) -> Assign:
        if not self.agent and not self.team:
            raise ValueError("name an agent (e-mail) or a team")
        return self


class TemplateReply(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=15)
    parameters: list[str] = Field(default_factory=list, max_length=20)


class Reply(BaseModel):
    """Answer through the outgoing pipeline: a text (Jinja sandbox: ``{{ contact.first_name
    }}``), a quick reply by shortcut, or an approved template; a text or quick reply needs
    the 24-hour window open (P1) and is skipped with the reason otherwise."""

    model_config = _STRICT
    do: Literal["reply"]
    text: str | None = Field(None, min_length=1, max_length=4096)
    # The same text in other languages, by language tag (``th``, ``zh-Hant``, ``en``…): the
    # customer is answered in theirs when it is here, else with ``text``.
    translations: dict[
        Annotated[str, StringConstraints(pattern=LANGUAGE_TAG)],
        Annotated[str, StringConstraints(min_length=1, max_length=4096)],
    ] = Field(default_factory=dict, max_length=20)
    quick_reply: str | None = Field(None, min_length=1, max_length=64)
    template: TemplateReply | None = None
    purpose: Literal["marketing", "utility", "service"] = "service"
    # The offer this reply makes (a discount code): one contact gets one offer once per
    # ``offer_every``, whichever rules would send it.
    offer: str | None = Field(None, pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    offer_every: Duration = timedelta(days=30)

    @model_validator(mode="after")
    def _one_kind(self) -> Reply:
        given = [k for k in ("text", "quick_reply", "template") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of text, quick_reply or template")
        if self.translations and self.text is None:
            raise ValueError("translations go with a text")
        return self


class Enrollment(BaseModel):
    model_config = _STRICT
    do: Literal["enroll", "unenroll"]
    sequence: Name


class Notify(BaseModel):
    """A note for the team on the contact's conversation; ``due_in`` makes it a follow-up task
    (the conversation returns to the inbox then), ``agent`` assigns it."""

    model_config = _STRICT
    do: Literal["notify"]
    message: str = Field(min_length=1, max_length=2000)
    agent: str | None = Field(None, max_length=320)
    due_in: Duration | None = None


class Answer(BaseModel):
    """A built-in answer, in the contact's language: the latest order's status, carrier and
    tracking link, or the nearest store (to the location the customer shared) with today's
    hours. Sent as a service message through the outgoing pipeline."""

    model_config = _STRICT
    do: Literal["answer_order_status", "answer_nearest_store"]


class Webhook(BaseModel):
    model_config = _STRICT
    do: Literal["webhook"]
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://")
    payload: dict[str, Any] = Field(default_factory=dict)


Action = Annotated[
    ChangeTag
    | ChangeList
    | SetField
    | AddScore
    | Assign
    | Reply
    | Enrollment
    | Notify
    | Answer
    | Webhook,
    Field(discriminator="do"),
]


# --- the rule -----------------------------------------------------------------------------------


class Guard(BaseModel):
    """At most ``times`` firings of this rule per contact within ``per``."""

    model_config = _STRICT
    times: int = Field(3, ge=1, le=1000)
    per: Duration = timedelta(hours=1)


class RuleDefinition(BaseModel):
    model_config = _STRICT
    trigger: Trigger
    condition: Condition | None = None
    actions: list[Action] = Field(min_length=1, max_length=20)
    guard: Guard = Guard()

    @field_validator("condition")
    @classmethod
    def _no_steps(cls, condition: Any) -> Any:
        if condition is not None and step_conditions(condition):
            raise ValueError(
                "read, delivered, opened, clicked and replied speak of a sequence's steps"
            )
        return condition

    @model_validator(mode="after")
    def _scheduled_rules_say_whom(self) -> RuleDefinition:
        if isinstance(self.trigger, OnSchedule) and self.condition is None:
            raise ValueError("a scheduled rule needs a condition: whom it is for")
        return self


# --- the guard ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


def guard_verdict(guard: Guard, *, depth: int, recent_firings: int) -> Verdict:
    """Whether a rule may fire for an event ``depth`` firings deep, having fired
    ``recent_firings`` times for this contact within ``guard.per``."""
    if depth >= MAX_DEPTH:
        return Verdict(False, f"loop guard: the event came from {depth} rule firings in a row")
    if recent_firings >= guard.times:
        per = int(guard.per.total_seconds())
        return Verdict(
            False, f"loop guard: fired {recent_firings} times for this contact in {per} s"
        )
    return Verdict(True)


def failing_part(condition: Any, holds: Any) -> str:
    """Words for the first part of ``condition`` that did not hold (``holds(c)`` judges a
    part): what a "not matched" trace says."""
    from tidings.conditions.domain import AllOf

    if isinstance(condition, AllOf):
        for part in condition.all:
            if not holds(part):
                return failing_part(part, holds)
    dumped = condition.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return f"condition not met: {dumped}"
