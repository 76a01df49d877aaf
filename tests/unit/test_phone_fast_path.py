"""The phone fast path gives the library's answer, and gives it wherever it claims to: on the
example numbers of every type in the regions the shops are in, written every way people
write them; on random valid numbers of those regions (a hypothesis property); and on random
digits it never answers what the library would not."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tidings.contacts.domain import quick_phone
from tidings.kernel.errors import TidingsError

REGIONS = ["TW", "HK", "TH", "SG", "MY", "ID", "VN", "PH", "MO", "KR", "US", "GB", "CN", "JP"]
# The regions whose numbers the fast path reads itself: one region per country code and no
# national-prefix rewriting. The others (a code shared by several regions as +1 and +44, or
# rules only the library applies, as in Korea, China and Japan) always go to the library.
FAST = ["TW", "HK", "TH", "SG", "MY", "ID", "VN", "PH", "MO"]
FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
]
KINDS = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]


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


def must_take_the_fast_path(number_region: str, style: int, home: str) -> bool:
    """A number of a fast region, written internationally, or nationally in its own region."""
    return number_region in FAST and (
        style != phonenumbers.PhoneNumberFormat.NATIONAL or home == number_region
    )


def written_ways() -> dict[tuple[str, str], bool]:
    """Every example number written every way, read in every home region (once each), and
    whether the fast path must answer it."""
    cases: dict[tuple[str, str], bool] = {}
    for region in REGIONS:
        for kind in KINDS:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            for style in FORMATS:
                text = phonenumbers.format_number(example, style)
                for home in REGIONS:
                    for written in (text, text.replace(" ", "-")):
                        cases[written, home] = must_take_the_fast_path(region, style, home)
    return cases


def test_example_numbers_take_the_fast_path_where_they_should_with_the_librarys_answer() -> None:
    cases = written_ways()
    must = [case for case, required in cases.items() if required]
    assert len(must) > 700  # the example set did not shrink to nothing
    declined = [case for case in must if quick_phone(*case) is None]
    wrong = [
        (case, quick, library(*case))
        for case in cases
        if (quick := quick_phone(*case)) is not None and quick != library(*case)
    ]
    assert declined == []
    assert wrong == []


def test_the_common_shapes_do_take_the_fast_path() -> None:
    assert quick_phone("0912 345 678", "TW") == ("+886912345678", "TW")
    assert quick_phone("+886-912-345-678", "HK") == ("+886912345678", "TW")
    assert quick_phone("9123 4567", "HK") == ("+85291234567", "HK")
    assert quick_phone("081 234 5678", "TH") == ("+66812345678", "TH")
    assert quick_phone("(02) 2345-6789", "TW") == ("+886223456789", "TW")
    assert quick_phone("0912 345 67", "TW") is None  # too short: the library explains why


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(FAST),
    st.sampled_from(KINDS),
    st.text(alphabet="0123456789", min_size=4, max_size=4),
    st.sampled_from(FORMATS),
    st.sampled_from(["", " ", "-"]),
    st.sampled_from(REGIONS),
)
def test_a_random_valid_number_of_a_fast_region_gets_the_librarys_answer_by_the_fast_path(
    region: str, kind: int, tail: str, style: int, separator: str, elsewhere: str
) -> None:
    example = phonenumbers.example_number_for_type(region, kind)
    assume(example is not None)
    national = str(example.national_number)
    number = phonenumbers.parse(f"+{example.country_code}{national[:-4]}{tail}")
    assume(phonenumbers.is_valid_number(number))
    text = phonenumbers.format_number(number, style).replace(" ", separator)
    home = region if style == phonenumbers.PhoneNumberFormat.NATIONAL else elsewhere
    expected = library(text, home)
    assert expected is not None
    assert quick_phone(text, home) == expected


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(REGIONS),
    st.sampled_from(["", "+", "0", "00"]),
    st.text(alphabet="0123456789", min_size=3, max_size=14),
    st.sampled_from(["", " ", "-", "."]),
)
def test_random_digits_never_get_an_answer_the_library_would_not_give(
    region: str, lead: str, digits: str, separator: str
) -> None:
    """Mostly invalid numbers: the fast path must then decline, and where it answers, agree."""
    text = lead + separator.join([digits[:3], digits[3:7], digits[7:]]).strip(separator)
    assert quick_phone(text, region) in (None, library(text, region))


def test_parse_phone_still_explains_invalid_numbers() -> None:
    from tidings.contacts.domain import parse_phone

    with pytest.raises(TidingsError) as caught:
        parse_phone("0912 345 67", "TW")
    assert caught.value.field == "phone" and "not a valid number" in caught.value.message
