"""Conditions compiled to SQL: which contacts of a workspace match, as one WHERE clause.

The clause is what audiences and segments run over a million contacts; the Python evaluator of
``conditions.domain`` judges one contact for rules and branches. Both must give the same answer
(tests/integration/test_condition_agreement.py checks it on random contacts and histories, on
SQLite and PostgreSQL), so every choice here mirrors one there:

- a leaf is two-valued: NULLs are turned into false, so ``not`` means what it says;
- text compares with A-Z folded (SQLite's ``lower``; ``translate`` on PostgreSQL, whose
  ``lower`` would also fold other letters) and orders by code point (``COLLATE "C"``);
- a JSON value is compared only with a value of its own kind (text, number, boolean), as
  Python refuses to order ``"5"`` and ``5``.

Tables of other packages (conversations, segment memberships) come in as selectables in
``Sources``, built by the package that owns them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    Select,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql.elements import ColumnElement

from tidings.conditions.domain import (
    AllOf,
    AnyOf,
    Consented,
    EventCount,
    FieldIs,
    HasTag,
    InList,
    InSegment,
    IntentSaid,
    KeywordSaid,
    LastInbound,
    LastOutbound,
    NotOf,
    Recency,
    fold,
    intent_count,
    keyword_count,
    tag_identity,
    text_of,
)
from tidings.contacts.orm import (
    Consent,
    Contact,
    ContactEvent,
    ContactList,
    ContactTag,
    ListMembership,
    Tag,
)

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"

# Contact columns a condition may name; any other name is a custom field.
TEXT_COLUMNS: dict[str, Any] = {
    "name": Contact.name,
    "first_name": Contact.first_name,
    "last_name": Contact.last_name,
    "email": Contact.email,
    "phone": Contact.phone,
    "country": Contact.country,
    "locale": Contact.locale,
    "timezone": Contact.timezone,
    "lifecycle_stage": Contact.lifecycle_stage,
    "lead_source": Contact.lead_source,
}
NUMBER_COLUMNS: dict[str, Any] = {
    "score": Contact.score,
    "activity_score": Contact.activity_score,
    "sentiment": Contact.sentiment,
}
BOOLEAN_COLUMNS: dict[str, Any] = {"churn_risk": Contact.churn_risk}


class NotAudienceConditionError(ValueError):
    """The condition speaks of a sequence's own steps (read, clicked …), or of something this
    query was not given the tables for."""


@dataclass(frozen=True)
class Sources:
    """What other packages own. ``last_messages``: rows ``(contact_id, last_inbound_at,
    last_outbound_at)``, one per contact; ``segment_members``: the contact ids of the segment
    with this folded name."""

    last_messages: Select[Any] | None = None
    segment_members: Callable[[str], Select[Any]] | None = None


def matching(
    condition: Any,
    *,
    workspace_id: int,
    as_of: datetime,
    dialect: str,
    sources: Sources = Sources(),
) -> ColumnElement[bool]:
    """The WHERE clause over ``contacts`` that holds for the contacts ``condition`` matches
    at ``as_of``; the caller adds ``contacts.workspace_id``.

    Raises:
        NotAudienceConditionError: for a step condition or a missing source.
    """
    return _Compiler(workspace_id, as_of, dialect, sources).clause(condition)


@dataclass
class _Compiler:
    workspace_id: int
    as_of: datetime
    dialect: str
    sources: Sources

    def clause(self, condition: Any) -> ColumnElement[bool]:
        match condition:
            case AllOf():
                return and_(*(self.clause(c) for c in condition.all))
            case AnyOf():
                return or_(*(self.clause(c) for c in condition.any))
            case NotOf():
                return not_(self.clause(condition.not_))
            case HasTag():
                tagged = (
                    select(ContactTag.contact_id)
                    .join(Tag, Tag.id == ContactTag.tag_id)
                    .where(
                        Tag.workspace_id == self.workspace_id,
                        Tag.key == tag_identity(condition.has_tag),
                    )
                )
                return Contact.id.in_(tagged)
            case InList():
                members = (
                    select(ListMembership.contact_id)
                    .join(ContactList, ContactList.id == ListMembership.list_id)
                    .where(
                        ContactList.workspace_id == self.workspace_id,
                        self.fold(ContactList.name) == fold(condition.in_list),
                    )
                )
                return Contact.id.in_(members)
            case FieldIs():
                return self.field(condition)
            case EventCount():
                return self.counted(condition)
            case KeywordSaid():
                streak = None
                if condition.in_a_row is not None:
                    number = self.json_number(ContactEvent.properties, "streak")
                    streak = func.coalesce(number >= condition.in_a_row, false())
                return self.counted(keyword_count(condition), also=streak)
            case IntentSaid():
                return self.counted(intent_count(condition))
            case Consented():
                return self.consented(condition)
            case LastInbound():
                return self.recent(condition.last_inbound, "last_inbound_at")
            case LastOutbound():
                return self.recent(condition.last_outbound, "last_outbound_at")
            case InSegment():
                if self.sources.segment_members is None:
                    raise NotAudienceConditionError("segments are not known here")
                return Contact.id.in_(self.sources.segment_members(fold(condition.in_segment)))
        raise NotAudienceConditionError(
            f"{type(condition).__name__} speaks of a sequence's steps: use it in a sequence"
        )

    # --- text, JSON ---------------------------------------------------------------------------

    def fold(self, text: Any) -> ColumnElement[Any]:
        if self.dialect == "postgresql":
            return func.translate(text, _UPPER, _LOWER)
        return func.lower(text)

    def ordered(self, text: ColumnElement[Any]) -> ColumnElement[Any]:
        """Text that orders by code point on both databases (SQLite's default already does)."""
        return text.collate("C") if self.dialect == "postgresql" else text

    def contains(self, text: ColumnElement[Any], wanted: str) -> ColumnElement[bool]:
        position = "strpos" if self.dialect == "postgresql" else "instr"
        found: ColumnElement[bool] = getattr(func, position)(self.fold(text), wanted) > 0
        return found

    def json_kind_is(self, document: Any, key: str, kinds: tuple[str, ...]) -> ColumnElement[bool]:
        """Whether the JSON value at ``key`` is of one of ``kinds`` (text, number, boolean)."""
        if self.dialect == "postgresql":
            names = {"text": "string", "number": "number", "boolean": "boolean"}
            return func.jsonb_typeof(document[key]).in_([names[k] for k in kinds])
        names_sqlite = {
            "text": ("text",),
            "number": ("integer", "real"),
            "boolean": ("true", "false"),
        }
        wanted = [name for k in kinds for name in names_sqlite[k]]
        return func.json_type(document, self.path(key)).in_(wanted)

    def path(self, key: str) -> str:
        return f'$."{key}"'

    def json_raw(self, document: Any, key: str) -> ColumnElement[Any]:
        if self.dialect == "postgresql":
            return document[key].as_string()  # type: ignore[no-any-return]
        return func.json_extract(document, self.path(key))

    def json_text(self, document: Any, key: str) -> ColumnElement[Any]:
        return case((self.json_kind_is(document, key, ("text",)), self.json_raw(document, key)))

    def json_number(self, document: Any, key: str) -> ColumnElement[Any]:
        raw = self.json_raw(document, key)
        if self.dialect == "postgresql":
            raw = cast(raw, Float)
        return case((self.json_kind_is(document, key, ("number",)), raw))

    def json_boolean(self, document: Any, key: str) -> ColumnElement[Any]:
        """1 for true, 0 for false, NULL for anything else."""
        if self.dialect == "postgresql":
            as_number: ColumnElement[Any] = case(
                (self.json_raw(document, key) == "true", 1), else_=0
            )
        else:
            as_number = self.json_raw(document, key)
        return case((self.json_kind_is(document, key, ("boolean",)), as_number))

    def json_is_set(self, document: Any, key: str) -> ColumnElement[bool]:
        """Present, not null and not the empty text (Python: ``found not in (None, "")``)."""
        if self.dialect == "postgresql":
            kind = func.jsonb_typeof(document[key])
            blank = and_(kind == "string", document[key].as_string() == "")
            return and_(kind.is_not(None), kind != "null", not_(blank))
        kind = func.json_type(document, self.path(key))
        blank = and_(kind == "text", func.json_extract(document, self.path(key)) == "")
        return and_(kind.is_not(None), kind != "null", not_(blank))

    # --- fields -------------------------------------------------------------------------------

    def field(self, condition: FieldIs) -> ColumnElement[bool]:
        name, op, wanted = condition.field, condition.op, condition.value
        if op in ("is_set", "is_not_set"):
            if name in TEXT_COLUMNS:
                column = TEXT_COLUMNS[name]
                is_set: ColumnElement[bool] = and_(column.is_not(None), column != "")
            elif name in NUMBER_COLUMNS or name in BOOLEAN_COLUMNS:
                column = {**NUMBER_COLUMNS, **BOOLEAN_COLUMNS}[name]
                is_set = column.is_not(None)
            else:
                is_set = self.json_is_set(Contact.custom_fields, name)
            return self.two_valued(is_set) if op == "is_set" else not_(self.two_valued(is_set))
        value = self.typed_value(name, wanted)
        if op == "contains":
            text = self.typed_value(name, "")
            if text is None:
                return false()
            return self.two_valued(self.contains(text, fold(text_of(wanted))))
        if value is None:  # never of the wanted kind
            return true() if op == "ne" else false()
        if isinstance(wanted, str):
            value, wanted = self.ordered(self.fold(value)), fold(wanted)
        elif isinstance(wanted, bool):
            wanted = int(wanted)
        compared = {
            "eq": value == wanted,
            "ne": value == wanted,  # negated below, so a NULL is "not equal"
            "gt": value > wanted,
            "gte": value >= wanted,
            "lt": value < wanted,
            "lte": value <= wanted,
        }[op]
        held = self.two_valued(compared)
        return not_(held) if op == "ne" else held

    def typed_value(self, name: str, wanted: Any) -> ColumnElement[Any] | None:
        """The field's value where it is of ``wanted``'s kind, NULL elsewhere; None when the
        field can never be of that kind."""
        text, boolean = isinstance(wanted, str), isinstance(wanted, bool)
        if name in TEXT_COLUMNS:
            return TEXT_COLUMNS[name] if text else None
        if name in NUMBER_COLUMNS:
            return NUMBER_COLUMNS[name] if not text and not boolean else None
        if name in BOOLEAN_COLUMNS:
            return case((BOOLEAN_COLUMNS[name], 1), else_=0) if boolean else None
        if text:
            return self.json_text(Contact.custom_fields, name)
        if boolean:
            return self.json_boolean(Contact.custom_fields, name)
        return self.json_number(Contact.custom_fields, name)

    def two_valued(self, clause: ColumnElement[Any]) -> ColumnElement[bool]:
        return func.coalesce(clause, false())

    # --- the timeline -------------------------------------------------------------------------

    def counted(
        self, condition: EventCount, also: ColumnElement[Any] | None = None
    ) -> ColumnElement[bool]:
        filters: list[ColumnElement[bool]] = [
            ContactEvent.workspace_id == self.workspace_id,
            ContactEvent.event_type == condition.event,
            ContactEvent.occurred_at <= self.as_of,
        ]
        if condition.within is not None:
            filters.append(ContactEvent.occurred_at > self.as_of - condition.within)
        for key, wanted in condition.where.items():
            filters.append(self.property_is(key, wanted))
        if also is not None:
            filters.append(also)
        events = select(ContactEvent.contact_id).where(*filters).group_by(ContactEvent.contact_id)
        count = func.count()
        if condition.at_least == 0:
            if condition.at_most is None:
                return true()
            return Contact.id.not_in(events.having(count > condition.at_most))
        having = count >= condition.at_least
        if condition.at_most is not None:
            having = and_(having, count <= condition.at_most)
        return Contact.id.in_(events.having(having))

    def property_is(self, key: str, wanted: Any) -> ColumnElement[bool]:
        document = ContactEvent.properties
        if isinstance(wanted, str):
            return self.two_valued(self.fold(self.json_text(document, key)) == fold(wanted))
        if isinstance(wanted, bool):
            return self.two_valued(self.json_boolean(document, key) == int(wanted))
        return self.two_valued(self.json_number(document, key) == wanted)

    def consented(self, condition: Consented) -> ColumnElement[bool]:
        stored = select(Consent.contact_id).where(
            Consent.workspace_id == self.workspace_id,
            Consent.channel == condition.consent,
            Consent.purpose == condition.purpose,
        )
        if condition.status == "unknown":
            return Contact.id.not_in(stored)
        return Contact.id.in_(stored.where(Consent.status == condition.status))

    def recent(self, recency: Recency, column: str) -> ColumnElement[bool]:
        if self.sources.last_messages is None:
            raise NotAudienceConditionError("message times are not known here")
        latest = self.sources.last_messages.subquery()
        moment = latest.c[column]
        if recency.within is not None:
            bound = moment > literal(self.as_of - recency.within, type_=moment.type)
        else:
            assert recency.older_than is not None
            bound = moment <= literal(self.as_of - recency.older_than, type_=moment.type)
        held: ColumnElement[bool] = Contact.id.in_(select(latest.c.contact_id).where(bound))
        if recency.or_never:
            ever = select(latest.c.contact_id).where(moment.is_not(None))
            held = or_(held, Contact.id.not_in(ever))
        return held
