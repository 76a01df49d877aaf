"""Sync with an external CRM, the pure part: field mapping with defaults and normalisation
(C5), millisecond timestamps, and what to do with each field when both sides may have
changed it (C4).

**Conflicts are judged per field**, against the value both sides agreed on at the last sync:
- only their side changed a field → it is taken;
- only ours changed → it is kept (and goes out with the next outbound sync);
- both changed it, or there was no last sync → the side modified last wins, on millisecond
  timestamps (ties keep ours), and the loser's value is queued for a person to review;
- with no last sync, an empty field of ours simply takes their value (nothing is overwritten).

A record from the CRM that is older than one it already sent is stale and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CONTACT_TARGETS = frozenset(
    {
        "phone",
        "email",
        "name",
        "first_name",
        "last_name",
        "locale",
        "timezone",
        "country",
        "lifecycle_stage",
        "score",
        "lead_source",
        "tags",
    }
)
CUSTOM_PREFIX = "custom_fields."
NAME = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")


class Normalise(StrEnum):
    NONE = "none"
    TRIM = "trim"
    LOWER = "lower"
    UPPER = "upper"
    SKU = "sku"  # a product name or alias → its SKU ("iPhone15 Pro Max" → "APL-IP15PM")
    MAP = "map"  # their value → ours through ``values`` ("VIP" → "gold")


class FieldRule(BaseModel):
    """One field of theirs into one of ours."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=200, description="their field's name")
    target: str = Field(
        min_length=1, max_length=100, description="ours: phone, name, custom_fields.level …"
    )
    default: Any = Field(
        None, description="our value when theirs is empty or missing (not normalised)"
    )
    normalise: Normalise = Normalise.NONE
    values: dict[str, Any] | None = Field(None, description="for normalise=map")

    @field_validator("target")
    @classmethod
    def _known_target(cls, target: str) -> str:
        if target in CONTACT_TARGETS:
            return target
        if target.startswith(CUSTOM_PREFIX) and NAME.fullmatch(target[len(CUSTOM_PREFIX) :]):
            return target
        known = ", ".join(sorted(CONTACT_TARGETS))
        raise ValueError(f"one of {known}, or custom_fields.<key>")


class FieldMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact: list[FieldRule] = Field(default_factory=list, max_length=200)


@dataclass(frozen=True)
class MappingError:
    field: str
    reason: str


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def map_fields(
    record: Mapping[str, Any],
    rules: list[FieldRule],
    *,
    sku_for: Callable[[str], str | None],
) -> tuple[dict[str, Any], list[MappingError]]:
    """Their record's fields as ours. An empty or missing value takes the rule's default (an
    empty "customer level" becomes "new customer" instead of the record being skipped); a
    value that cannot be normalised is left out and reported, the other fields go on."""
    mapped: dict[str, Any] = {}
    errors: list[MappingError] = []
    for rule in rules:
        value = record.get(rule.source)
        if _empty(value):
            if rule.default is not None:
                mapped[rule.target] = rule.default  # already in our terms: not normalised
            continue
        try:
            mapped[rule.target] = _normalised(value, rule, sku_for)
        except ValueError as error:
            errors.append(MappingError(rule.source, str(error)))
    return mapped, errors


def _normalised(value: Any, rule: FieldRule, sku_for: Callable[[str], str | None]) -> Any:
    if rule.normalise is Normalise.NONE:
        return value
    if not isinstance(value, str):
        if (
            rule.normalise is Normalise.MAP
            and rule.values is not None
            and str(value) in rule.values
        ):
            return rule.values[str(value)]
        raise ValueError(f"a text is needed to {rule.normalise.value}, got {type(value).__name__}")
    text = value.strip()
    match rule.normalise:
        case Normalise.TRIM:
            return text
        case Normalise.LOWER:
            return text.casefold()
        case Normalise.UPPER:
            return text.upper()
        case Normalise.SKU:
            sku = sku_for(text)
            if sku is None:
                raise ValueError(f"no product is called {text!r}")
            return sku
        case Normalise.MAP:
            table = rule.values or {}
            folded = {k.casefold(): v for k, v in table.items()}
            if text.casefold() not in folded:
                raise ValueError(f"{text!r} is not one of {', '.join(sorted(table))}")
            return folded[text.casefold()]
    raise AssertionError(rule.normalise)  # pragma: no cover — every kind is handled above


# --- time ---------------------------------------------------------------------------------------


def parse_timestamp(value: Any) -> datetime:
    """An ISO 8601 time with a zone, or milliseconds since the epoch (HubSpot's form), to
    millisecond precision.

    Raises:
        ValueError: with the reason.
    """
    if isinstance(value, bool):
        raise ValueError("a time: ISO 8601 with a zone, or milliseconds since 1970")
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        moment = datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            raise ValueError("the time needs a zone (Z or +07:00)")
    else:
        raise ValueError("a time: ISO 8601 with a zone, or milliseconds since 1970")
    return to_millisecond(moment)


def to_millisecond(moment: datetime) -> datetime:
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


# --- the three-way judgement --------------------------------------------------------------------


class Winner(StrEnum):
    THEIRS = "theirs"
    OURS = "ours"


@dataclass(frozen=True)
class Difference:
    """A field both sides changed: who won, and the value that lost (queued for review)."""

    field: str
    ours: Any
    theirs: Any
    winner: Winner


@dataclass(frozen=True)
class Judgement:
    take: dict[str, Any]  # their values to write
    conflicts: list[Difference]


UNKNOWN: Any = object()  # no last sync to compare with


def judge_fields(
    ours: Mapping[str, Any],
    theirs: Mapping[str, Any],
    base: Mapping[str, Any] | None,
    *,
    ours_at: datetime,
    theirs_at: datetime,
) -> Judgement:
    """Per field of ``theirs``: take it, keep ours, or judge a conflict by time (see above)."""
    theirs_newer = to_millisecond(theirs_at) > to_millisecond(ours_at)
    take: dict[str, Any] = {}
    conflicts: list[Difference] = []
    for name, their_value in theirs.items():
        our_value = ours.get(name)
        if _same(our_value, their_value):
            continue
        agreed = UNKNOWN if base is None or name not in base else base[name]
        if agreed is UNKNOWN and _empty(our_value):
            take[name] = their_value  # filling an empty field overwrites nothing
            continue
        if agreed is not UNKNOWN and _same(our_value, agreed):
            take[name] = their_value  # only they changed it
            continue
        if agreed is not UNKNOWN and _same(their_value, agreed):
            continue  # only we changed it
        winner = Winner.THEIRS if theirs_newer else Winner.OURS
        if winner is Winner.THEIRS:
            take[name] = their_value
        conflicts.append(Difference(name, our_value, their_value, winner))
    return Judgement(take, conflicts)


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, list) and isinstance(right, list):
        return sorted(map(str, left)) == sorted(map(str, right))
    if isinstance(left, str) and isinstance(right, str):
        return left.strip() == right.strip()
    return bool(left == right)


ObjectKind = Literal["contact", "order"]
