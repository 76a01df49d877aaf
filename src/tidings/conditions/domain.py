"""The condition language shared by sequence branches and goals, segments, rules and
broadcast audiences.

A condition is a small typed tree (Pydantic models, one per kind) read from JSON or YAML:
``{"all": [{"has_tag": "vip"}, {"not": {"event": "order.placed", "within": "72h"}}]}``.
This module parses it and evaluates it in Python on one contact's facts; ``contacts.
condition_sql`` compiles the same tree to SQL for audiences, and a property test keeps the two
in agreement. It is pure: the facts are gathered by the caller, and time is the ``as_of``
instant it is given (S8: events count by when they happened, not when they arrived).

Text compares without case for the letters A-Z only (``fold``): that is what SQLite's
``lower()`` does, so the database and Python give the same answer for Thai, Chinese or
accented text, which compare exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    model_validator,
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


# --- text ---------------------------------------------------------------------------------------

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(text: str) -> str:
    """Text as conditions compare it: A-Z lowered, everything else as it is."""
    return text.translate(_ASCII_LOWER)


def tag_identity(name: str) -> str:
    """The identity of a tag: spaces collapsed and case folded (as contacts store tag keys)."""
    return " ".join(name.split()).casefold()


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
    field: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "contains", "is_set", "is_not_set"] = "eq"
    value: str | int | float | bool | None = None

    @model_validator(mode="after")
    def _value_for_comparisons(self) -> FieldIs:
        if self.op in ("is_set", "is_not_set"):
            return self
        if self.value is None:
            raise ValueError(f"{self.op} compares with a value (is_set / is_not_set test blanks)")
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise ValueError("a finite number")
        return self


class EventCount(BaseModel):
    """Event ``event`` at least / at most N times within ``within`` (all time when absent),
    optionally with matching properties."""

    model_config = _STRICT
    event: str = Field(pattern=EVENT_TYPE)
    within: Duration | None = None
    at_least: int = Field(1, ge=0)
    at_most: int | None = Field(None, ge=0)
    where: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("where")
    @classmethod
    def _plain_keys(cls, where: dict[str, Any]) -> dict[str, Any]:
        return _checked_properties(where)


class Consented(BaseModel):
    """The contact's consent for a channel and purpose is ``status`` (``unknown``: never
    given nor withdrawn)."""

    model_config = _STRICT
    consent: Literal["whatsapp", "email", "sms"]
    purpose: Literal["marketing", "transactional"] = "marketing"
    status: Literal["opted_in", "opted_out", "unknown"] = "opted_in"


class Recency(BaseModel):
    """``within``: the latest one happened less than this long ago; ``older_than``: more than
    this long ago. ``or_never`` also holds when there was none."""

    model_config = _STRICT
    within: Duration | None = None
    older_than: Duration | None = None
    or_never: bool = False

    @model_validator(mode="after")
    def _one_bound(self) -> Recency:
        if (self.within is None) == (self.older_than is None):
            raise ValueError("give one of within or older_than")
        return self


class LastInbound(BaseModel):
    """When the contact last wrote to us (any WhatsApp number of the workspace)."""

    model_config = _STRICT
    last_inbound: Recency


class LastOutbound(BaseModel):
    """When we last sent the contact a WhatsApp message that the provider accepted."""

    model_config = _STRICT
    last_outbound: Recency


class KeywordSaid(BaseModel):
    """The contact's messages contained a keyword of the workspace's group ``keyword`` (event
    ``keyword.detected``) at least / at most N times within D; ``in_a_row``: in that many
    consecutive messages."""

    model_config = _STRICT
    keyword: str = Field(min_length=1, max_length=64)
    within: Duration | None = None
    at_least: int = Field(1, ge=0)
    at_most: int | None = Field(None, ge=0)
    in_a_row: int | None = Field(None, ge=2, le=20)


class IntentSaid(BaseModel):
    """A message of the contact was understood as ``intent`` (event ``intent.detected``) at
    least / at most N times within D."""

    model_config = _STRICT
    intent: str = Field(min_length=1, max_length=64)
    within: Duration | None = None
    at_least: int = Field(1, ge=0)
    at_most: int | None = Field(None, ge=0)


class InSegment(BaseModel):
    """The contact is a member of the saved segment of that name."""

    model_config = _STRICT
    in_segment: str = Field(min_length=1, max_length=200)


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
    "consent": Consented,
    "last_inbound": LastInbound,
    "last_outbound": LastOutbound,
    "keyword": KeywordSaid,
    "intent": IntentSaid,
    "in_segment": InSegment,
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
    | Annotated[Consented, Tag("consent")]
    | Annotated[LastInbound, Tag("last_inbound")]
    | Annotated[LastOutbound, Tag("last_outbound")]
    | Annotated[KeywordSaid, Tag("keyword")]
    | Annotated[IntentSaid, Tag("intent")]
    | Annotated[InSegment, Tag("in_segment")]
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
    short forms ``{"tag_added": "vip"}``, ``{"list_joined": "Newsletter"}``,
    ``{"segment_entered": "High intent"}``, ``{"replied": true}`` (stored as the event form)."""

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
        if "segment_entered" in value and len(value) == 1:
            return {"event": "segment.entered", "where": {"segment": value["segment_entered"]}}
        if value.get("replied") is True and len(value) == 1:
            return {"event": "message.received"}
        return value

    @field_validator("where")
    @classmethod
    def _plain_keys(cls, where: dict[str, Any]) -> dict[str, Any]:
        return _checked_properties(where)

    def matches(self, event_type: str, properties: Mapping[str, Any]) -> bool:
        return event_type == self.event and properties_match(self.where, properties)


def _matcher(value: Any) -> Any:
    return EventMatcher._from_short_form(value)


Matcher = Annotated[EventMatcher, BeforeValidator(_matcher)]


_PROPERTY_NAME = re.compile(r'^[^"\\\s]{1,64}$')


def _checked_properties(where: dict[str, Any]) -> dict[str, Any]:
    for key, value in where.items():
        if not _PROPERTY_NAME.match(key):
            raise ValueError(
                "property names of 1-64 characters without spaces, quotes or backslashes"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}: a finite number")
    return where


def properties_match(where: Mapping[str, Any], properties: Mapping[str, Any]) -> bool:
    """Every wanted property equals the event's; text compares without case (``fold``)."""
    for key, wanted in where.items():
        found = properties.get(key)
        if isinstance(wanted, str) and isinstance(found, str):
            if fold(wanted) != fold(found):
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
    """One contact as conditions see it. Tags are tag identities (``tag_identity``), list and
    segment names folded (``fold``); consents map (channel, purpose) to the status."""

    tags: frozenset[str] = frozenset()
    lists: frozenset[str] = frozenset()
    fields: Mapping[str, Any] = field(default_factory=dict)
    events: Sequence[Event] = ()
    enrolled_at: datetime | None = None
    step_messages: Mapping[str, StepMessage] = field(default_factory=dict)
    consents: Mapping[tuple[str, str], str] = field(default_factory=dict)
    last_inbound_at: datetime | None = None
    last_outbound_at: datetime | None = None
    segments: frozenset[str] = frozenset()


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
            return tag_identity(condition.has_tag) in facts.tags
        case InList():
            return fold(condition.in_list) in facts.lists
        case FieldIs():
            return compare_field(facts.fields.get(condition.field), condition.op, condition.value)
        case EventCount():
            return _count_holds(condition, facts, as_of)
        case Consented():
            status = facts.consents.get((condition.consent, condition.purpose), "unknown")
            return status == condition.status
        case LastInbound():
            return _recent(condition.last_inbound, facts.last_inbound_at, as_of)
        case LastOutbound():
            return _recent(condition.last_outbound, facts.last_outbound_at, as_of)
        case KeywordSaid():
            return _said(facts, condition, as_of)
        case IntentSaid():
            return _count_holds(intent_count(condition), facts, as_of)
        case InSegment():
            return fold(condition.in_segment) in facts.segments
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


def _count_holds(
    condition: EventCount,
    facts: ContactFacts,
    as_of: datetime,
    also: Callable[[Event], bool] | None = None,
) -> bool:
    since = as_of - condition.within if condition.within is not None else None
    count = sum(
        1
        for event in facts.events
        if event.type == condition.event
        and event.occurred_at <= as_of
        and (since is None or event.occurred_at > since)
        and properties_match(condition.where, event.properties)
        and (also is None or also(event))
    )
    if count < condition.at_least:
        return False
    return condition.at_most is None or count <= condition.at_most


def _recent(recency: Recency, latest: datetime | None, as_of: datetime) -> bool:
    if latest is None:
        return recency.or_never
    if recency.within is not None:
        return latest > as_of - recency.within
    assert recency.older_than is not None
    return latest <= as_of - recency.older_than


def keyword_count(condition: KeywordSaid) -> EventCount:
    """A keyword condition as the event count it stands for; ``in_a_row`` counts the
    detections whose run of consecutive messages (``streak``) reached it."""
    return EventCount(
        event=KEYWORD_EVENT,
        within=condition.within,
        at_least=condition.at_least,
        at_most=condition.at_most,
        where={"keyword": condition.keyword},
    )


def intent_count(condition: IntentSaid) -> EventCount:
    return EventCount(
        event=INTENT_EVENT,
        within=condition.within,
        at_least=condition.at_least,
        at_most=condition.at_most,
        where={"intent": condition.intent},
    )


def _said(facts: ContactFacts, condition: KeywordSaid, as_of: datetime) -> bool:
    counted = keyword_count(condition)
    if condition.in_a_row is None:
        return _count_holds(counted, facts, as_of)
    runs = condition.in_a_row
    return _count_holds(
        counted,
        facts,
        as_of,
        also=lambda event: _number(event.properties.get("streak")) >= runs,
    )


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return value


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
        return isinstance(found, str) and fold(text_of(wanted)) in fold(found)
    if isinstance(found, str) and isinstance(wanted, str):
        found, wanted = fold(found), fold(wanted)
    elif not _comparable(found, wanted):
        return op == "ne"
    if op == "eq":
        return bool(found == wanted)
    if op == "ne":
        return bool(found != wanted)
    ordered = {"gt": found > wanted, "gte": found >= wanted, "lt": found < wanted}
    return bool(ordered.get(op, found <= wanted))


def text_of(value: Any) -> str:
    """A value as ``contains`` looks for it in text (JSON spelling: true, 1.5)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
        case EventCount() | KeywordSaid() | IntentSaid():
            return {"events"}
        case Consented():
            return {"consents"}
        case LastInbound() | LastOutbound():
            return {"last_messages"}
        case InSegment():
            return {"segments"}
        case EmailOpened():
            return {"messages", "events"} if condition.human else {"messages"}
        case MessageRead() | MessageDelivered():
            return {"messages"}
        case LinkClicked() | Replied():
            return {"events", "messages"}
    return set()


KEYWORD_EVENT = "keyword.detected"
INTENT_EVENT = "intent.detected"
# Kinds that speak of one enrollment's steps: meaningful in a sequence only, never in SQL.
STEP_KINDS = (MessageRead, MessageDelivered, EmailOpened, LinkClicked, Replied)


def event_types(condition: Any) -> set[str]:
    """The timeline event types a condition counts (what facts must load)."""
    match condition:
        case AllOf() | AnyOf():
            parts = condition.all if isinstance(condition, AllOf) else condition.any
            return set().union(*(event_types(c) for c in parts))
        case NotOf():
            return event_types(condition.not_)
        case EventCount():
            return {condition.event}
        case KeywordSaid():
            return {KEYWORD_EVENT}
        case IntentSaid():
            return {INTENT_EVENT}
        case LinkClicked():
            return {"link.clicked"}
        case Replied():
            return {"message.received"}
        case EmailOpened():
            return {"email.opened"} if condition.human else set()
    return set()


def step_conditions(condition: Any) -> list[Any]:
    """The parts of a condition that only a sequence can judge (read, clicked …)."""
    match condition:
        case AllOf() | AnyOf():
            parts = condition.all if isinstance(condition, AllOf) else condition.any
            return [found for c in parts for found in step_conditions(c)]
        case NotOf():
            return step_conditions(condition.not_)
        case _ if isinstance(condition, STEP_KINDS):
            return [condition]
    return []


def walk(condition: Any) -> Iterator[Any]:
    """Every node of a condition tree, the root first."""
    yield condition
    match condition:
        case AllOf() | AnyOf():
            for part in condition.all if isinstance(condition, AllOf) else condition.any:
                yield from walk(part)
        case NotOf():
            yield from walk(condition.not_)


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


def error_path(
    loc: Sequence[Any], data: Any, *, root: str = "", tag_keys: tuple[str, ...] = ()
) -> str:
    """A Pydantic error location as a field path under ``root`` (``steps[2].template.name``),
    without the union-member names Pydantic adds: a condition's kind, or the value of one of
    ``tag_keys`` (a step's ``type``, a rule's ``on`` and ``do``)."""
    parts = [root] if root else []
    node = data
    for position, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
            continue
        key = str(item)
        following = loc[position + 1] if position + 1 < len(loc) else None
        if isinstance(node, Mapping):
            tagged = any(node.get(tag) == key for tag in tag_keys)
            kind = (
                key in _KINDS and key in node and isinstance(following, str) and following in node
            )
            if tagged or kind:
                continue
        if key.startswith(("function-", "tagged-union")):
            continue
        parts.append(f".{key}" if parts else key)
        node = node.get(key) if isinstance(node, Mapping) else None
    return "".join(parts)


MAX_CONDITION_PARTS = 200  # nodes of one condition tree: far past any real segment


def count_parts(data: Any) -> int:
    """How many objects and lists a condition, as given, is made of (before it is parsed, so
    that an enormous one costs nothing to refuse)."""
    count, stack = 0, [data]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            count += 1
            stack.extend(node.values())
        elif isinstance(node, list):
            count += 1
            stack.extend(node)
    return count
