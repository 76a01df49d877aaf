"""Pure rules about contacts: how phones, e-mails and custom fields are normalised and checked.

Every ``check_*``/``normalize_*`` function either returns the canonical value or raises a
``TidingsError`` naming the field, so the API, the CLI and the CSV import report the same words.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers.phonemetadata import PhoneMetadata

from tidings.conditions.domain import tag_identity
from tidings.kernel.errors import invalid
from tidings.kernel.localization import check_locale, check_region, check_timezone


class LifecycleStage(enum.StrEnum):
    """Where a contact stands; the names follow HubSpot's so CRM mapping is one-to-one."""

    SUBSCRIBER = "subscriber"
    LEAD = "lead"
    MARKETING_QUALIFIED = "marketing_qualified"
    SALES_QUALIFIED = "sales_qualified"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    EVANGELIST = "evangelist"
    OTHER = "other"


class Channel(enum.StrEnum):
    WHATSAPP = "whatsapp"
    EMAIL = "email"
    SMS = "sms"


class ConsentPurpose(enum.StrEnum):
    """Marketing and transactional consent are separate (as HubSpot separates them)."""

    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"


class ConsentStatus(enum.StrEnum):
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"


class CustomFieldType(enum.StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    BOOLEAN = "boolean"
    CHOICE = "choice"


FIELD_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "on"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "off"})
MAX_TEXT_FIELD = 2000
MAX_TAG_LENGTH = 100


def parse_phone(raw: str, default_region: str, *, field: str = "phone") -> tuple[str, str | None]:
    """Return the E.164 form of ``raw`` (C2) and the region the number belongs to.

    Local numbers are read in ``default_region``: ``0912 345 678`` in a Taiwan workspace
    becomes ``+886912345678``.

    Raises:
        TidingsError: 422 ``invalid_phone`` naming ``field``; nothing is stored.
    """
    text = raw.strip()
    if not text:
        raise invalid("invalid_phone", "the phone number is empty", field=field)
    if text.startswith("00"):
        text = "+" + text[2:]
    quick = quick_phone(text, default_region)
    if quick is not None:
        return quick
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as error:
        raise invalid(
            "invalid_phone", f"{raw!r} is not a phone number: {error._msg}", field=field
        ) from None
    if not phonenumbers.is_valid_number(number):
        region = phonenumbers.region_code_for_number(number) or default_region
        raise invalid(
            "invalid_phone",
            f"{raw!r} is not a valid number for {region} (checked as +{number.country_code})",
            field=field,
        )
    number_region = phonenumbers.region_code_for_number(number)
    country = None if number_region in (None, "ZZ", "001") else str(number_region)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), country


# --- a fast path for the common shapes of phone numbers ---------------------------------------
#
# phonenumbers.parse + is_valid_number cost ~35 µs, most of a CSV row's checking. For plain
# digits (with spaces, dashes, dots or brackets) in a region whose rules are simple — one
# region per country code, a national prefix that is just stripped — the same metadata
# patterns are applied directly in ~3 µs. Anything else returns None and takes the library's
# full path. A hypothesis property holds the two to the same answers.

_SEPARATORS = str.maketrans("", "", " -.()\t")
_DIGITS = re.compile(r"\+?[0-9]{4,17}")


@dataclass(frozen=True)
class _RegionRules:
    country_code: str
    national_prefix: str | None
    international_prefix: re.Pattern[str] | None
    general: tuple[frozenset[int], re.Pattern[str]]
    types: tuple[tuple[frozenset[int], re.Pattern[str]], ...]


_RULES: dict[str, _RegionRules | None] = {}


def _rules_for(region: str) -> _RegionRules | None:
    if region in _RULES:
        return _RULES[region]
    metadata = PhoneMetadata.metadata_for_region(region)
    rules = None
    if (
        metadata is not None
        and metadata.country_code is not None
        and len(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(metadata.country_code, ())) == 1
        and metadata.national_prefix_transform_rule is None
        and metadata.national_prefix_for_parsing in (None, metadata.national_prefix)
        and not metadata.leading_digits
        and metadata.general_desc is not None
        and metadata.general_desc.national_number_pattern
    ):

        def desc(d: Any) -> tuple[frozenset[int], re.Pattern[str]] | None:
            if d is None or not d.national_number_pattern:
                return None
            return frozenset(d.possible_length or ()), re.compile(d.national_number_pattern)

        # Validity is "matches any type": the types people give first, to stop early.
        kinds = [
            metadata.mobile, metadata.fixed_line, metadata.premium_rate, metadata.toll_free,
            metadata.shared_cost, metadata.voip, metadata.personal_number, metadata.pager,
            metadata.uan, metadata.voicemail,
        ]  # fmt: skip
        general = desc(metadata.general_desc)
        assert general is not None
        rules = _RegionRules(
            country_code=str(metadata.country_code),
            national_prefix=metadata.national_prefix or None,
            international_prefix=(
                re.compile(metadata.international_prefix) if metadata.international_prefix else None
            ),
            general=general,
            types=tuple(d for d in (desc(k) for k in kinds) if d is not None),
        )
    _RULES[region] = rules
    return rules


def _valid_national(national: str, rules: _RegionRules) -> bool:
    def matches(lengths: frozenset[int], pattern: re.Pattern[str]) -> bool:
        return (not lengths or len(national) in lengths) and pattern.fullmatch(national) is not None

    return matches(*rules.general) and any(matches(*kind) for kind in rules.types)


def quick_phone(text: str, default_region: str) -> tuple[str, str] | None:
    """``(E.164, region)`` for a plainly written valid number, or None to use the full path."""
    digits = text.translate(_SEPARATORS)
    if not _DIGITS.fullmatch(digits):
        return None
    if digits.startswith("+"):
        digits = digits[1:]
        if digits.startswith("0"):
            return None  # no country code starts with 0
        for size in (1, 2, 3):
            regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(digits[:size]))
            if regions:
                break
        else:
            return None
        if len(regions) != 1 or (rules := _rules_for(regions[0])) is None:
            return None
        region, national = regions[0], digits[size:]
        if rules.national_prefix and national.startswith(rules.national_prefix):
            return None  # "+886 0912…": the library decides whether that 0 is dropped
    else:
        rules = _rules_for(default_region)
        if rules is None or digits.startswith(rules.country_code):
            return None  # a country code typed without "+" is the library's call
        if rules.international_prefix and rules.international_prefix.match(digits):
            return None
        region, national = default_region, digits
        if rules.national_prefix and national.startswith(rules.national_prefix):
            national = national[len(rules.national_prefix) :]
            if not _valid_national(national, rules):
                return None
    if national.startswith("0") or not _valid_national(national, rules):
        return None
    return f"+{rules.country_code}{national}", region


def normalize_phone(raw: str, default_region: str, *, field: str = "phone") -> str:
    """The E.164 form of ``raw``; see :func:`parse_phone`. Raises ``TidingsError`` (422)."""
    return parse_phone(raw, default_region, field=field)[0]


# The common case (plain ASCII local part, letters-digits-hyphens domain with an alphabetic
# TLD) is checked by this pattern in ~1 µs instead of ~40 µs; anything else goes to
# email_validator. A property test keeps the two in agreement on what the pattern accepts.
_PLAIN_EMAIL = re.compile(
    r"^(?=.{6,254}$)(?=[^@]{1,64}@)"
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@(?![^@]*--)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?!(?:local|localhost|test|invalid|onion|arpa|example|internal|home|lan|corp|intranet|private)$)"
    r"[A-Za-z]{2,24}$"
)


def normalize_email(raw: str, *, field: str = "email") -> str:
    """Return the lower-cased, syntax-checked address.

    Raises:
        TidingsError: 422 ``invalid_email`` naming ``field``.
    """
    text = raw.strip()
    if _PLAIN_EMAIL.match(text):
        return text.lower()
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise invalid("invalid_email", f"{raw!r}: {error}", field=field) from None


def normalize_tag(raw: str, *, field: str = "tags") -> str:
    """Trim and collapse inner whitespace; tags compare case-insensitively by :func:`tag_key`.

    Raises:
        TidingsError: 422 for an empty or over-long tag.
    """
    name = " ".join(raw.split())
    if not name:
        raise invalid("invalid_tag", "a tag cannot be empty", field=field)
    if len(name) > MAX_TAG_LENGTH:
        raise invalid("invalid_tag", f"tags are at most {MAX_TAG_LENGTH} characters", field=field)
    return name


def tag_key(name: str) -> str:
    """The case-insensitive identity of a tag ("VIP" and "vip" are one tag)."""
    return tag_identity(name)


def check_field_key(key: str) -> str:
    """Raises ``TidingsError`` (422 on ``key``) unless ``key`` is a snake_case identifier."""
    if not FIELD_KEY_PATTERN.match(key):
        raise invalid(
            "invalid_field_key",
            "use lowercase letters, digits and underscores, starting with a letter",
            field="key",
        )
    return key


def check_choices(field_type: CustomFieldType, choices: list[str] | None) -> list[str] | None:
    """A choice field needs distinct options; other types take none.

    Raises:
        TidingsError: 422 on ``choices``.
    """
    if field_type != CustomFieldType.CHOICE:
        if choices:
            raise invalid("invalid_choices", "only choice fields have choices", field="choices")
        return None
    cleaned = [c.strip() for c in choices or [] if c.strip()]
    if not cleaned or len(set(cleaned)) != len(cleaned):
        raise invalid(
            "invalid_choices", "a choice field needs distinct, non-empty choices", field="choices"
        )
    return cleaned


def coerce_custom_value(
    field_type: CustomFieldType, value: Any, *, choices: list[str] | None, field: str
) -> str | float | bool | None:
    """Turn an API or CSV value into the stored form of a custom field.

    Numbers are stored as floats, dates as ISO ``YYYY-MM-DD`` text (so they sort and compare
    in SQL on every database), booleans as booleans. ``None`` or an empty string clears.

    Raises:
        TidingsError: 422 naming ``field`` when the value does not fit the type.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    match field_type:
        case CustomFieldType.TEXT:
            return _coerce_text(value, field)
        case CustomFieldType.NUMBER:
            return _coerce_number(value, field)
        case CustomFieldType.DATE:
            return _coerce_date(value, field)
        case CustomFieldType.BOOLEAN:
            return _coerce_boolean(value, field)
        case CustomFieldType.CHOICE:
            return _coerce_choice(value, choices or [], field)


def _coerce_text(value: Any, field: str) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise invalid("invalid_value", "expected text", field=field)
    text = str(value).strip()
    if len(text) > MAX_TEXT_FIELD:
        raise invalid("invalid_value", f"at most {MAX_TEXT_FIELD} characters", field=field)
    return text


def _coerce_number(value: Any, field: str) -> float:
    if isinstance(value, bool):
        raise invalid("invalid_value", "expected a number, got a boolean", field=field)
    try:
        number = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        raise invalid("invalid_value", f"{value!r} is not a number", field=field) from None
    if not number.is_finite():
        raise invalid("invalid_value", "the number must be finite", field=field)
    return float(number)


def _coerce_date(value: Any, field: str) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise invalid(
            "invalid_value", f"{value!r} is not a date (YYYY-MM-DD)", field=field
        ) from None


def _coerce_boolean(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise invalid("invalid_value", f"{value!r} is not true or false", field=field)


def _coerce_choice(value: Any, choices: list[str], field: str) -> str:
    text = str(value).strip()
    if text not in choices:
        raise invalid("invalid_value", f"{text!r} is not one of: {', '.join(choices)}", field=field)
    return text


@dataclass(frozen=True)
class FieldSpec:
    """A custom field's definition, as the pure rules need it."""

    key: str
    field_type: CustomFieldType
    choices: tuple[str, ...] | None = None


# Not a contact column: the phone's region, used as the country when none is known.
PHONE_COUNTRY = "phone_country"
# A contact's own fields that a person, an import or another system may set.
STANDARD_FIELDS = (
    "name",
    "first_name",
    "last_name",
    "phone",
    "email",
    "locale",
    "timezone",
    "country",
    "lifecycle_stage",
    "score",
    "lead_source",
    "do_not_contact",
)
TEXT_LIMITS = {"name": 200, "first_name": 100, "last_name": 100, "lead_source": 64}
SCORE_RANGE = (-1_000_000, 1_000_000)


def prepare_contact_fields(
    data: Mapping[str, Any], *, specs: Mapping[str, FieldSpec], region: str
) -> dict[str, Any]:
    """Validate and normalise the contact fields present in ``data``.

    Returns the stored form of each given field; ``custom_fields`` holds only the custom keys
    given (a ``None`` value means "clear this field").

    Raises:
        TidingsError: 422 naming the first offending field (``custom_fields.<key>`` for custom).
    """
    prepared: dict[str, Any] = {}
    for name, limit in TEXT_LIMITS.items():
        if name in data:
            prepared[name] = _optional_text(data[name], limit, name)
    if "phone" in data:
        if _blank(data["phone"]):
            prepared["phone"] = None
        else:
            prepared["phone"], prepared[PHONE_COUNTRY] = parse_phone(data["phone"], region)
    if "email" in data:
        prepared["email"] = None if _blank(data["email"]) else normalize_email(data["email"])
    if "locale" in data:
        prepared["locale"] = None if _blank(data["locale"]) else check_locale(data["locale"])
    if "timezone" in data:
        prepared["timezone"] = (
            None if _blank(data["timezone"]) else check_timezone(data["timezone"])
        )
    if "country" in data:
        prepared["country"] = (
            None if _blank(data["country"]) else check_region(data["country"], field="country")
        )
    if "lifecycle_stage" in data:
        prepared["lifecycle_stage"] = _lifecycle(data["lifecycle_stage"])
    if "score" in data:
        prepared["score"] = _score(data["score"])
    if "do_not_contact" in data:
        prepared["do_not_contact"] = _coerce_boolean(data["do_not_contact"], "do_not_contact")
    if "custom_fields" in data:
        prepared["custom_fields"] = prepare_custom_fields(data["custom_fields"] or {}, specs)
    return prepared


def prepare_custom_fields(
    values: Mapping[str, Any], specs: Mapping[str, FieldSpec]
) -> dict[str, Any]:
    """Raises ``TidingsError`` (422) for an undefined key or a value that misfits its type."""
    prepared: dict[str, Any] = {}
    for key, value in values.items():
        spec = specs.get(key)
        where = f"custom_fields.{key}"
        if spec is None:
            raise invalid("unknown_field", f"no custom field {key!r}; define it first", field=where)
        choices = list(spec.choices) if spec.choices else None
        prepared[key] = coerce_custom_value(spec.field_type, value, choices=choices, field=where)
    return prepared


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _optional_text(value: Any, limit: int, field: str) -> str | None:
    if _blank(value):
        return None
    if not isinstance(value, str):
        raise invalid("invalid_value", "expected text", field=field)
    text = " ".join(value.split())
    if len(text) > limit:
        raise invalid("invalid_value", f"at most {limit} characters", field=field)
    return text


def _lifecycle(value: Any) -> str:
    try:
        return LifecycleStage(str(value).strip().lower()).value
    except ValueError:
        options = ", ".join(s.value for s in LifecycleStage)
        raise invalid(
            "invalid_value",
            f"{value!r} is not a lifecycle stage ({options})",
            field="lifecycle_stage",
        ) from None


def _score(value: Any) -> int:
    if isinstance(value, bool):
        raise invalid("invalid_value", "expected a whole number", field="score")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise invalid("invalid_value", f"{value!r} is not a whole number", field="score") from None
    low, high = SCORE_RANGE
    if not low <= number <= high:
        raise invalid("invalid_value", f"the score must lie in [{low}, {high}]", field="score")
    return number


_CJK_RANGES = (
    ("\u3040", "\u30ff"),  # kana
    ("\u3400", "\u4dbf"),
    ("\u4e00", "\u9fff"),
    ("\uac00", "\ud7af"),  # hangul
    ("\uf900", "\ufaff"),
)


def _is_cjk(text: str) -> bool:
    return any(low <= ch <= high for ch in text for low, high in _CJK_RANGES)


def name_parts(display_name: str) -> tuple[str | None, str | None]:
    """A first and a last name from a display name (a WhatsApp profile name), for greeting
    the person by name: ``Ploy Srisuk`` and ``สมชาย ใจดี`` are given name first; ``陳 大文``,
    written with a space, family name first. A name written without spaces — most Chinese,
    Japanese and Korean names, a single Thai name — is kept whole as the first name: cutting
    it would guess, and greeting someone by their whole name is never wrong."""
    words = display_name.split()
    if not words:
        return None, None
    if len(words) == 1:
        return words[0][: TEXT_LIMITS["first_name"]], None
    if _is_cjk(words[0]):
        first, last = " ".join(words[1:]), words[0]
    else:
        first, last = words[0], " ".join(words[1:])
    return first[: TEXT_LIMITS["first_name"]], last[: TEXT_LIMITS["last_name"]]
