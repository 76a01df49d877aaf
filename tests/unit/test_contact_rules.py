"""Pure rules of contacts: phones (C2), e-mails, tags and typed custom fields."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given
from hypothesis import strategies as st

from tidings.contacts.domain import (
    CustomFieldType,
    FieldSpec,
    coerce_custom_value,
    normalize_email,
    normalize_phone,
    normalize_tag,
    prepare_contact_fields,
    tag_key,
)
from tidings.kernel.errors import TidingsError


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("0912 345 678", "TW", "+886912345678"),
        ("0912-345-678", "TW", "+886912345678"),
        ("+886 912 345 678", "HK", "+886912345678"),
        ("9123 4567", "HK", "+85291234567"),
        ("00852 9123 4567", "TW", "+85291234567"),
        ("081 234 5678", "TH", "+66812345678"),
    ],
)
def test_local_and_international_numbers_become_e164(raw: str, region: str, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["12345", "", "   ", "not a phone", "0912 345", "+886 12"])
def test_unparseable_phones_are_rejected_naming_the_field(raw: str) -> None:
    with pytest.raises(TidingsError) as caught:
        normalize_phone(raw, "TW")
    assert caught.value.code == "invalid_phone"
    assert caught.value.field == "phone"
    assert caught.value.http_status == 422


def test_emails_are_lowercased_and_checked() -> None:
    assert normalize_email("  Mei.Lin@Example.COM ") == "mei.lin@example.com"
    assert normalize_email("ผู้ใช้@ตัวอย่าง.ไทย") == "ผู้ใช้@ตัวอย่าง.ไทย"
    for bad in ("no-at-sign", "a@b", "two@@example.com", "a@localhost", "x@shop.test"):
        with pytest.raises(TidingsError) as caught:
            normalize_email(bad)
        assert caught.value.field == "email"


emailish = st.from_regex(
    r"[A-Za-z0-9_.+\-]{1,20}@[A-Za-z0-9.\-]{1,20}\.[A-Za-z]{1,8}", fullmatch=True
)


@given(emailish)
def test_fast_email_path_agrees_with_email_validator(address: str) -> None:
    try:
        expected: str | None = validate_email(
            address, check_deliverability=False
        ).normalized.lower()
    except EmailNotValidError:
        expected = None
    try:
        ours: str | None = normalize_email(address)
    except TidingsError:
        ours = None
    assert ours == expected


def test_tags_compare_case_insensitively_and_collapse_spaces() -> None:
    assert normalize_tag("  Price   sensitive ") == "Price sensitive"
    assert tag_key("VIP") == tag_key(" vip ")
    with pytest.raises(TidingsError):
        normalize_tag("   ")


@pytest.mark.parametrize(
    ("field_type", "raw", "stored"),
    [
        (CustomFieldType.NUMBER, "1,234.5", 1234.5),
        (CustomFieldType.NUMBER, 7, 7.0),
        (CustomFieldType.DATE, "2026-02-18", "2026-02-18"),
        (CustomFieldType.BOOLEAN, "Yes", True),
        (CustomFieldType.BOOLEAN, "0", False),
        (CustomFieldType.TEXT, " 金卡 ", "金卡"),
        (CustomFieldType.CHOICE, "gold", "gold"),
        (CustomFieldType.TEXT, "", None),
    ],
)
def test_custom_values_are_stored_in_their_type(
    field_type: CustomFieldType, raw: object, stored: object
) -> None:
    assert coerce_custom_value(field_type, raw, choices=["gold", "silver"], field="f") == stored


@pytest.mark.parametrize(
    ("field_type", "raw"),
    [
        (CustomFieldType.NUMBER, "twelve"),
        (CustomFieldType.NUMBER, True),
        (CustomFieldType.NUMBER, "NaN"),
        (CustomFieldType.DATE, "18/02/2026"),
        (CustomFieldType.BOOLEAN, "maybe"),
        (CustomFieldType.CHOICE, "bronze"),
    ],
)
def test_custom_values_of_the_wrong_type_are_rejected(
    field_type: CustomFieldType, raw: object
) -> None:
    with pytest.raises(TidingsError) as caught:
        coerce_custom_value(field_type, raw, choices=["gold", "silver"], field="custom_fields.x")
    assert caught.value.field == "custom_fields.x"


def test_prepare_rejects_undefined_custom_fields_and_bad_stages() -> None:
    specs = {"level": FieldSpec("level", CustomFieldType.CHOICE, ("gold",))}
    prepared = prepare_contact_fields(
        {"phone": "0912345678", "custom_fields": {"level": "gold"}, "score": "12"},
        specs=specs,
        region="TW",
    )
    assert prepared == {
        "phone": "+886912345678",
        "phone_country": "TW",
        "custom_fields": {"level": "gold"},
        "score": 12,
    }
    with pytest.raises(TidingsError) as caught:
        prepare_contact_fields({"custom_fields": {"nope": 1}}, specs=specs, region="TW")
    assert caught.value.field == "custom_fields.nope"
    with pytest.raises(TidingsError) as caught:
        prepare_contact_fields({"lifecycle_stage": "hot"}, specs=specs, region="TW")
    assert caught.value.field == "lifecycle_stage"
    with pytest.raises(TidingsError) as caught:
        prepare_contact_fields({"timezone": "Mars/Olympus"}, specs=specs, region="TW")
    assert caught.value.field == "timezone"


def test_a_display_name_gives_a_first_name_to_greet_in_any_script() -> None:
    from tidings.contacts.domain import name_parts

    assert name_parts("Ploy Srisuk") == ("Ploy", "Srisuk")
    assert name_parts("สมชาย ใจดี") == ("สมชาย", "ใจดี")
    assert name_parts("陳大文") == ("陳大文", None)  # no space: kept whole, never guessed
    assert name_parts("陳 大文") == ("大文", "陳")  # written apart: family name first
    assert name_parts("  ") == (None, None)
    assert name_parts("A" * 300)[0] == "A" * 100
