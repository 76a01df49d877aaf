"""The pure rules of outgoing webhooks: who wants which event, what an answer means for the
next attempt (X3), signatures and their replay window, addresses; and products named in
messages in three languages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.automation.products import Catalogue, CatalogueEntry, wants_to_buy
from tidings.webhooks.domain import (
    DeliveryState,
    Outcome,
    RetryPolicy,
    after_attempt,
    check_event_names,
    check_target_url,
    judge,
    sign,
    verify,
    wants,
)

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("events", "event_type", "expected"),
    [
        (["*"], "tag.added", True),
        (["tag.added"], "tag.added", True),
        (["tag.added"], "tag.removed", False),
        (["order.*"], "order.refunded", True),  # a custom event of a known family
        (["order.*"], "orders.placed", False),
        (["contact.created"], "contact.created.extra", False),
    ],
)
def test_who_wants_which_event(events: list[str], event_type: str, expected: bool) -> None:
    assert wants(events, event_type) is expected


def test_event_names_are_checked_against_the_catalogue() -> None:
    assert check_event_names(["order.*", "tag.added", "tag.added"]) == ["order.*", "tag.added"]
    with pytest.raises(ValueError, match=re.escape("unknown event 'contact.craeted'")):
        check_event_names(["contact.craeted"])
    with pytest.raises(ValueError, match=re.escape("unknown event 'nothing.*'")):
        check_event_names(["nothing.*"])
    for bad, reason in (
        ([], "a list"),
        ("tag.added", "a list"),
        ([1], "texts"),
        (["x"] * 51, "at most 50"),
    ):
        with pytest.raises(ValueError, match=reason):
            check_event_names(bad)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (None, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (429, Outcome.RETRY),
        (408, Outcome.RETRY),
        (410, Outcome.GONE),
        (400, Outcome.PERMANENT),
        (401, Outcome.PERMANENT),
        (404, Outcome.PERMANENT),
        (301, Outcome.PERMANENT),  # redirects are not followed
    ],
)
def test_what_an_answer_means(code: int | None, outcome: Outcome) -> None:
    assert judge(code) is outcome


def test_three_retries_five_minutes_apart_then_dead() -> None:
    policy = RetryPolicy()
    states = []
    for attempt in range(1, 5):
        step = after_attempt(Outcome.RETRY, attempts=attempt, policy=policy, now=NOW)
        states.append((step.state, step.retry_at))
    assert states == [
        (DeliveryState.PENDING, NOW + timedelta(minutes=5)),
        (DeliveryState.PENDING, NOW + timedelta(minutes=5)),
        (DeliveryState.PENDING, NOW + timedelta(minutes=5)),
        (DeliveryState.DEAD, None),
    ]
    permanent = after_attempt(Outcome.PERMANENT, attempts=1, policy=policy, now=NOW)
    assert permanent.state is DeliveryState.DEAD
    assert (
        after_attempt(Outcome.GONE, attempts=1, policy=policy, now=NOW).state is DeliveryState.DEAD
    )


@given(st.binary(max_size=300), st.integers(min_value=-299, max_value=299))
def test_a_signature_verifies_within_five_minutes_and_only_for_its_body(
    body: bytes, skew: int
) -> None:
    timestamp = str(int(NOW.timestamp()))
    signature = sign("whsec_test", timestamp, body)
    at = NOW + timedelta(seconds=skew)
    assert verify("whsec_test", timestamp=timestamp, signature=signature, body=body, now=at)
    assert not verify("whsec_other", timestamp=timestamp, signature=signature, body=body, now=at)
    assert not verify(
        "whsec_test", timestamp=timestamp, signature=signature, body=body + b"x", now=at
    )
    late = NOW + timedelta(minutes=5, seconds=2)
    assert not verify("whsec_test", timestamp=timestamp, signature=signature, body=body, now=late)


def test_addresses() -> None:
    assert check_target_url(" https://hooks.zapier.com/hooks/catch/1/abc ") == (
        "https://hooks.zapier.com/hooks/catch/1/abc"
    )
    for bad, reason in (
        ("ftp://x.example/", "only http"),
        ("https://u:p@x.example/", "credentials"),
        ("https:///nohost", "no host"),
        ("https://x.example:99999/", "not a valid address"),
        ("https://x.example/" + "a" * 2000, "at most"),
        ("", "http"),
    ):
        with pytest.raises(ValueError, match=reason):
            check_target_url(bad)


CATALOGUE = Catalogue.of(
    [
        CatalogueEntry("APL-IP15PM", "iPhone 15 Pro Max", ("iPhone15 Pro Max", "苹果15 Pro Max")),
        CatalogueEntry("EYE-01", "ตา", ()),  # a product whose name is a short Thai word
        CatalogueEntry("TEA-GZ", "贵州绿茶", ()),
    ]
)


@pytest.mark.parametrize(
    ("text", "skus"),
    [
        ("I want to buy an iphone 15 pro max", ["APL-IP15PM"]),
        ("อยากซื้อ iPhone15 Pro Max ค่ะ", ["APL-IP15PM"]),
        ("我想买苹果15 Pro Max", ["APL-IP15PM"]),
        ("iPhone-15-Pro-Max please", ["APL-IP15PM"]),
        ("iphone 15 pro", []),  # another model
        ("ส่งไปจังหวัดตากได้ไหม", []),  # ตา is not in ตาก
        ("我要买贵州绿茶两盒", ["TEA-GZ"]),
        ("贵州发货吗", []),
    ],
)
def test_products_are_found_as_whole_words(text: str, skus: list[str]) -> None:
    assert CATALOGUE.mentioned(text) == skus


@pytest.mark.parametrize(
    ("text", "intent", "buying"),
    [
        ("I want to buy an iphone 15 pro max", None, True),
        ("อยากได้ iPhone15 Pro Max 1 เครื่องค่ะ", None, True),
        ("CF iPhone15 Pro Max ค่ะ", None, True),
        ("我要买苹果15 Pro Max", None, True),
        ("how much is the iphone 15 pro max", "price", False),
        ("I bought an iphone 15 pro max, where is it?", "order_status", False),
        ("stop, I don't want to buy anything", "opt_out", False),
    ],
)
def test_wanting_to_buy(text: str, intent: str | None, buying: bool) -> None:
    assert wants_to_buy(text, intent) is buying
