"""The condition language shared by sequence branches, goals and (with #6) segments and rules.

A condition is a small typed tree (Pydantic models, one per kind) read from JSON or YAML:
``{"all": [{"has_tag": "vip"}, {"not": {"event": "order.placed", "within": "72h"}}]}``.
This module parses it and evaluates it in Python on one contact's facts. It is pure: the
facts are gathered by the caller, and time is the ``as_of`` instant it is given (S8: events
count by when they happened, not when they arrived).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    field_validator,
)

# --- durations ----------------------------------------------------------------------------------

_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")
_UNITS = (("w", 7 * 86_400), ("d", 86_400), ("h", 3_600), ("m", 60))
MAX_DURATION = timedelta(days=3_650)


def parse_duration(value: Any) -> timedelta:
    """``"72h"``, ``"1d12h"``, ``"2w"``, ``"30m"`` or ``{"days": 1, "hours": 2}`` → timedelta."""
    if isinstance(value, timedelta):
        found = value
    elif isinstance(value, Mapping):
        unknown = set(value) - {"weeks", "days", "hours", "minutes"}
        if unknown:
            raise ValueError(
                f"unknown unit {sorted(unknown)[0]!r}: use weeks, days, hours, minutes"
            )
        if not all(isinstance(v, int) and v >= 0 for v in value.values()):
            raise ValueError("each unit takes a whole number ≥ 0")
        found = timedelta(**{k: int(v) for k, v in value.items()})
    elif isinstance(value, str) and value.strip():
        match = _DURATION.fullmatch(value.strip().replace(" ", ""))
        if match is None or not any(match.groups()):
            raise ValueError('a duration such as "30m", "72h", "1d12h" or "2w"')
        weeks, days, hours, minutes = (int(part or 0) for part in match.groups())
        found = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes)
    else:
        raise ValueError('a duration such as "30m", "72h", "1d12h" or "2w"')
    if found > MAX_DURATION:
        raise ValueError("at most ten years")
    return found


def format_duration(value: timedelta) -> str:
    """The canonical text of a duration (what export writes): ``"1d12h"``; zero is ``"0m"``."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0m"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


# --- the conditions -----------------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
FIELD_OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "is_set", "is_not_set")
StepRef = Annotated[str, Field(min_length=1, max_length=64)]
EVENT_TYPE = r"^[^\s]{1,64}$"


class AllOf(BaseModel):
    model_config = _STRICT
    all: list[Condition] = Field(min_length=1)


class AnyOf(BaseModel):
    model_config = _STRICT
    any: list[Condition] = Field(min_length=1)


class NotOf(BaseModel):
    model_config = _STRICT
    not_: Condition = Field(alias="not")


class HasTag(BaseModel):
    model_config = _STRICT
    has_tag: str = Field(min_length=1, max_length=64)


class InList(BaseModel):
    model_config = _STRICT
    in_list: str = Field(min_length=1, max_length=200)


class FieldIs(BaseModel):
    """A contact field compared with a value: standard (``lifecycle_stage``, ``score``,
    ``country`` …) or custom."""

    model_config = _STRICT
    field: str = Field(min_length=1, max_length=64)
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "contains", "is_set", "is_not_set"] = "eq"
    value: str | int | float | bool | None = None


class EventCount(BaseModel):
    """Event ``event`` at least / at most N times within ``within`` (all time when absent),
    optionally with matching properties."""

    model_config = _STRICT
    event: str = Field(pattern=EVENT_TYPE)
    within: Duration | None = None
    at_least: int = Field(1, ge=0)
    at_most: int | None = Field(None, ge=0)
    where: dict[str, str | int | float | bool] = Field(default_factory=dict)


class MessageRead(BaseModel):
    """The WhatsApp message of step ``read`` (of this enrollment) has been read."""

    model_config = _STRICT
    read: StepRef


class MessageDelivered(BaseModel):
    model_config = _STRICT
    delivered: StepRef


class EmailOpened(BaseModel):
    """The e-mail of step ``opened`` was opened (its tracking pixel fetched); ``human: true``
    counts only opens that do not look like a machine's (prefetching proxies, scanners)."""

    model_config = _STRICT
    opened: StepRef
    human: bool = False


class LinkClicked(BaseModel):
    """A tracked link was clicked (event ``link.clicked``) after step ``clicked`` sent its
    message; ``"*"`` means any time since the contact was enrolled."""

    model_config = _STRICT
    clicked: StepRef
    human: bool = False  # only clicks that do not look like a link scanner's


class Replied(BaseModel):
    """The contact wrote to us (event ``message.received``) after step ``replied`` sent its
    message; ``"*"`` means any time since the contact was enrolled."""

    model_config = _STRICT
    replied: StepRef


_KINDS: dict[str, type[BaseModel]] = {
    "all": AllOf,
    "any": AnyOf,
    "not": NotOf,
    "has_tag": HasTag,
    "in_list": InList,
    "field": FieldIs,
    "event": EventCount,
    "read": MessageRead,
    "delivered": MessageDelivered,
    "opened": EmailOpened,
    "clicked": LinkClicked,
    "replied": Replied,
}

CONDITION_KINDS = tuple(_KINDS)


def _kind_of(value: Any) -> str | None:
    """The kind is named by the condition's one distinguishing key."""
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True)
    if not isinstance(value, Mapping):
        return None
    for key in value:
        if key in _KINDS:
            return str(key)
    return None


Condition = Annotated[
    Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")]
    | Annotated[HasTag, Tag("has_tag")]
    | Annotated[InList, Tag("in_list")]
    | Annotated[FieldIs, Tag("field")]
    | Annotated[EventCount, Tag("event")]
    | Annotated[MessageRead, Tag("read")]
    | Annotated[MessageDelivered, Tag("delivered")]
    | Annotated[EmailOpened, Tag("opened")]
    | Annotated[LinkClicked, Tag("clicked")]
    | Annotated[Replied, Tag("replied")],
    Discriminator(
        _kind_of,
        custom_error_type="unknown_condition",
        custom_error_message="a condition names one of: " + ", ".join(_KINDS),
    ),
]

for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()


class EventMatcher(BaseModel):
    """Which events something reacts to: ``{"event": "order.placed", "where": {…}}``, or the
    short forms ``{"tag_added": "vip"}``, ``{"list_joined": "Newsletter"}``, ``{"replied": true}``
    (stored as the event form)."""

    model_config = _STRICT
    event: str = Field(pattern=EVENT_TYPE)
    where: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @classmethod
    def _from_short_form(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        if "tag_added" in value and len(value) == 1:
            return {"event": "tag.added", "where": {"tag": value["tag_added"]}}
        if "list_joined" in value and len(value) == 1:
            return {"event": "list.joined", "where": {"list": value["list_joined"]}}
        if value.get("replied") is True and len(value) == 1:
            return {"event": "message.received"}
        return value

    @field_validator("where")
    @classmethod
    def _plain_keys(cls, where: dict[str, Any]) -> dict[str, Any]:
        if any(not key or len(key) > 64 for key in where):
            raise ValueError("property names of 1-64 characters")
        return where

    def matches(self, event_type: str, properties: Mapping[str, Any]) -> bool:
        return event_type == self.event and properties_match(self.where, properties)


def _matcher(value: Any) -> Any:
    return EventMatcher._from_short_form(value)


Matcher = Annotated[EventMatcher, BeforeValidator(_matcher)]


def properties_match(where: Mapping[str, Any], properties: Mapping[str, Any]) -> bool:
    """Every wanted property equals the event's; text compares without case (tags, lists)."""
    for key, wanted in where.items():
        found = properties.get(key)
        if isinstance(wanted, str) and isinstance(found, str):
            if wanted.casefold() != found.casefold():
                return False
        elif found != wanted or isinstance(found, bool) != isinstance(wanted, bool):
            return False
    return True


# --- facts and evaluation -----------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    type: str
    occurred_at: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepMessage:
    """What is known of the message a step sent to this contact."""

    sent_at: datetime
    delivered_at: datetime | None = None
    read_at: datetime | None = None  # e-mail: the first open
    message_id: int | None = None


@dataclass(frozen=True)
class ContactFacts:
    """One contact as conditions see it. Tags and list names are case-folded."""

    tags: frozenset[str] = frozenset()
    lists: frozenset[str] = frozenset()
    fields: Mapping[str, Any] = field(default_factory=dict)
    events: Sequence[Event] = ()
    enrolled_at: datetime | None = None
    step_messages: Mapping[str, StepMessage] = field(default_factory=dict)


def evaluate(condition: Any, facts: ContactFacts, as_of: datetime) -> bool:
    """Whether ``condition`` holds for the contact at ``as_of``; later events do not count."""
    match condition:
        case AllOf():
            return all(evaluate(c, facts, as_of) for c in condition.all)
        case AnyOf():
            return any(evaluate(c, facts, as_of) for c in condition.any)
        case NotOf():
            return not evaluate(condition.not_, facts, as_of)
        case HasTag():
            return condition.has_tag.casefold() in facts.tags
        case InList():
            return condition.in_list.casefold() in facts.lists
        case FieldIs():
            return compare_field(facts.fields.get(condition.field), condition.op, condition.value)
        case EventCount():
            return _count_holds(condition, facts, as_of)
        case MessageRead():
            sent = facts.step_messages.get(condition.read)
            return sent is not None and sent.read_at is not None and sent.read_at <= as_of
        case MessageDelivered():
            sent = facts.step_messages.get(condition.delivered)
            return sent is not None and (
                (sent.delivered_at is not None and sent.delivered_at <= as_of)
                or (sent.read_at is not None and sent.read_at <= as_of)
            )
        case EmailOpened():
            return _opened(facts, condition, as_of)
        case LinkClicked():
            return _happened_since(
                facts, condition.clicked, "link.clicked", as_of, human=condition.human
            )
        case Replied():
            return _happened_since(facts, condition.replied, "message.received", as_of)
    raise TypeError(f"not a condition: {condition!r}")


def _count_holds(condition: EventCount, facts: ContactFacts, as_of: datetime) -> bool:
    since = as_of - condition.within if condition.within is not None else None
    count = sum(
        1
        for event in facts.events
        if event.type == condition.event
        and event.occurred_at <= as_of
        and (since is None or event.occurred_at > since)
        and properties_match(condition.where, event.properties)
    )
    if count < condition.at_least:
        return False
    return condition.at_most is None or count <= condition.at_most


def _opened(facts: ContactFacts, condition: EmailOpened, as_of: datetime) -> bool:
    sent = facts.step_messages.get(condition.opened)
    if sent is None:
        return False
    if not condition.human:
        return sent.read_at is not None and sent.read_at <= as_of
    return any(
        event.type == "email.opened"
        and event.occurred_at <= as_of
        and event.properties.get("message_id") == sent.message_id
        and not event.properties.get("machine")
        for event in facts.events
    )


def _happened_since(
    facts: ContactFacts, step: str, event_type: str, as_of: datetime, *, human: bool = False
) -> bool:
    if step == "*":
        since = facts.enrolled_at
    else:
        sent = facts.step_messages.get(step)
        if sent is None:
            return False
        since = sent.sent_at
    return any(
        event.type == event_type
        and event.occurred_at <= as_of
        and (since is None or event.occurred_at >= since)
        and not (human and event.properties.get("machine"))
        for event in facts.events
    )


def compare_field(found: Any, op: str, wanted: Any) -> bool:
    """``found op wanted``; values of different kinds never compare equal or ordered."""
    if op == "is_set":
        return found not in (None, "")
    if op == "is_not_set":
        return found in (None, "")
    if op == "contains":
        return isinstance(found, str) and str(wanted).casefold() in found.casefold()
    if isinstance(found, str) and isinstance(wanted, str):
        found, wanted = found.casefold(), wanted.casefold()
    elif not _comparable(found, wanted):
        return op == "ne"
    if op == "eq":
        return bool(found == wanted)
    if op == "ne":
        return bool(found != wanted)
    ordered = {"gt": found > wanted, "gte": found >= wanted, "lt": found < wanted}
    return bool(ordered.get(op, found <= wanted))


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or type(a) is type(b)


def needs(condition: Any) -> set[str]:
    """The kinds of facts ``condition`` reads: tags, lists, fields, events, messages."""
    match condition:
        case AllOf() | AnyOf():
            parts = condition.all if isinstance(condition, AllOf) else condition.any
            return set().union(*(needs(c) for c in parts))
        case NotOf():
            return needs(condition.not_)
        case HasTag():
            return {"tags"}
        case InList():
            return {"lists"}
        case FieldIs():
            return {"fields"}
        case EventCount():
            return {"events"}
        case EmailOpened():
            return {"messages", "events"} if condition.human else {"messages"}
        case MessageRead() | MessageDelivered():
            return {"messages"}
        case LinkClicked() | Replied():
            return {"events", "messages"}
    return set()


def steps_named(condition: Any) -> set[str]:
    """The step ids a condition refers to (checked to exist in its sequence)."""
    match condition:
        case AllOf() | AnyOf():
            parts = condition.all if isinstance(condition, AllOf) else condition.any
            return set().union(*(steps_named(c) for c in parts))
        case NotOf():
            return steps_named(condition.not_)
        case MessageRead():
            return {condition.read}
        case MessageDelivered():
            return {condition.delivered}
        case EmailOpened():
            return {condition.opened}
        case LinkClicked():
            return {condition.clicked} - {"*"}
        case Replied():
            return {condition.replied} - {"*"}
    return set()
