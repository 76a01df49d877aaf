"""The phone fast path gives the library's answer or none at all: on example numbers of every
type in the regions the shops are in, written every way people write them, and on random
digits in random regions (a hypothesis property)."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.contacts.domain import quick_phone
from tidings.kernel.errors import TidingsError

REGIONS = ["TW", "HK", "TH", "SG", "MY", "ID", "VN", "PH", "MO", "KR", "US", "GB", "CN", "JP"]
FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
]


def library(text: str, region: str) -> tuple[str, str | None] | None:
    """What phonenumbers says: (E.164, region), or None for an invalid number."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    found = phonenumbers.region_code_for_number(number)
    country = None if found in (None, "ZZ", "001") else found
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), country


def written_ways() -> list[tuple[str, str]]:
    cases = []
    for home in REGIONS:
        for region in REGIONS:
            for kind in (
                phonenumbers.PhoneNumberType.MOBILE,
                phonenumbers.PhoneNumberType.FIXED_LINE,
            ):
                example = phonenumbers.example_number_for_type(region, kind)
                if example is None:
                    continue
                for style in FORMATS:
                    text = phonenumbers.format_number(example, style)
                    cases += [(text, home), (text.replace(" ", "-"), home)]
    return cases


@pytest.mark.parametrize(("text", "region"), written_ways())
def test_every_example_number_gets_the_librarys_answer(text: str, region: str) -> None:
    quick = quick_phone(text, region)
    if quick is not None:
        assert quick == library(text, region)


def test_the_common_shapes_do_take_the_fast_path() -> None:
    assert quick_phone("0912 345 678", "TW") == ("+886912345678", "TW")
    assert quick_phone("+886-912-345-678", "HK") == ("+886912345678", "TW")
    assert quick_phone("9123 4567", "HK") == ("+85291234567", "HK")
    assert quick_phone("081 234 5678", "TH") == ("+66812345678", "TH")
    assert quick_phone("(02) 2345-6789", "TW") == ("+886223456789", "TW")
    assert quick_phone("0912 345 67", "TW") is None  # too short: the library explains why


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(REGIONS),
    st.sampled_from(["", "+", "0", "00"]),
    st.text(alphabet="0123456789", min_size=3, max_size=14),
    st.sampled_from(["", " ", "-", "."]),
)
def test_random_digits_never_get_an_answer_the_library_would_not_give(
    region: str, lead: str, digits: str, separator: str
) -> None:
    text = lead + separator.join([digits[:3], digits[3:7], digits[7:]]).strip(separator)
    quick = quick_phone(text, region)
    if quick is not None:
        assert quick == library(text, region)


def test_parse_phone_still_explains_invalid_numbers() -> None:
    from tidings.contacts.domain import parse_phone

    with pytest.raises(TidingsError) as caught:
        parse_phone("0912 345 67", "TW")
    assert caught.value.field == "phone" and "not a valid number" in caught.value.message
