"""Intents (A5) on the shipped labelled sets, and the automatic answers' pure parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tidings.automation.answers import (
    StoreInfo,
    check_hours,
    distance_km,
    language_for,
    latest_order,
    nearest,
    order_answer,
    store_answer,
)
from tidings.automation.intents import (
    INTENTS,
    built_in_detector,
    evaluate_detector,
    read_examples,
    shipped_examples,
)
from tidings.conditions.domain import Event

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # a Tuesday


def test_the_shipped_sets_are_large_labelled_and_in_three_languages() -> None:
    training, held_out = shipped_examples("training"), shipped_examples("held-out")
    assert len(training) + len(held_out) >= 300
    for examples in (training, held_out):
        assert {e.language for e in examples} == {"en", "th", "zh"}
        assert {e.intent for e in examples} == {*INTENTS, None}  # hard negatives included
    assert not {e.text for e in training} & {e.text for e in held_out}


def test_held_out_accuracy_does_not_regress() -> None:
    """The figure docs/automation.md reports; a change that lowers it must say so there."""
    report = evaluate_detector(built_in_detector(), shipped_examples("held-out"))
    assert report.accuracy >= 0.90
    assert all(s.precision >= 0.75 for s in report.per_intent)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("พัสดุอยู่ไหนคะ", "order_status"),
        ("我的包裹在哪", "order_status"),
        ("where is my parcel", "order_status"),
        ("ร้านอยู่ที่ไหนคะ", "store_location"),
        ("how much is it?", "price"),
        ("ขอคุยกับพนักงานค่ะ", "human_handoff"),
        ("退订", "opt_out"),
        ("thank you!", None),
    ],
)
def test_the_seed_questions_are_understood(text: str, intent: str | None) -> None:
    assert built_in_detector().detect(text).intent == intent


def test_a_bad_examples_file_names_the_line() -> None:
    with pytest.raises(ValueError, match="line 2"):
        read_examples(['{"text": "hi", "language": "en", "intent": null}', "{oops"])
    with pytest.raises(ValueError, match="line 1: unknown intent"):
        read_examples(['{"text": "hi", "language": "en", "intent": "weather"}'])


def test_the_latest_order_is_merged_from_its_events() -> None:
    events = [
        Event("order.placed", NOW - timedelta(days=3), {"order_id": "A1", "status": "placed"}),
        Event(
            "order.shipped",
            NOW - timedelta(days=1),
            {"order_id": "A1", "carrier": "Kerry", "tracking_url": "https://t.example/1"},
        ),
        Event("order.placed", NOW - timedelta(days=9), {"order_id": "A0"}),
    ]
    order = latest_order(events)
    assert order is not None
    assert (order.order_id, order.status, order.carrier) == ("A1", "shipped", "Kerry")
    assert order_answer(order, "th") == (
        "คำสั่งซื้อ A1 ของคุณจัดส่งแล้ว กำลังเดินทางค่ะ ขนส่ง: Kerry ติดตามพัสดุได้ที่ https://t.example/1"
    )
    assert "A1" in order_answer(order, "zh-Hant") and "已出貨" in order_answer(order, "zh-Hant")
    assert latest_order([]) is None
    assert "agent" in order_answer(None, "en")


def test_the_nearest_store_and_its_hours_today() -> None:
    siam = StoreInfo("Siam", "Rama I Rd", 13.7463, 100.5347, {"tue": "10:00-21:00"})
    chiang_mai = StoreInfo("Nimman", "Nimmanhaemin Rd", 18.7999, 98.9677, {"mon": "10:00-20:00"})
    found = nearest([siam, chiang_mai], (13.7563, 100.5018))  # Bangkok centre
    assert found is not None and found[0] is siam and 3 < found[1] < 4
    assert 580 < distance_km((13.7563, 100.5018), (18.7999, 98.9677)) < 600
    assert "open today 10:00-21:00" in store_answer(found, [siam], "en", NOW)
    assert "วันนี้ปิด" in store_answer((chiang_mai, 1.0), [chiang_mai], "th", NOW)
    assert "Share your location" in store_answer(None, [siam], "en", NOW)
    with pytest.raises(ValueError, match="funday"):
        check_hours({"funday": "10:00-12:00"})
    with pytest.raises(ValueError, match="mon"):
        check_hours({"mon": "ten to six"})


def test_answers_come_in_the_language_the_customer_wrote_in() -> None:
    assert language_for("พัสดุอยู่ไหน", "en-US") == "th"
    assert language_for("我的包裹在哪", "zh-Hans-CN") == "zh-Hans"
    assert language_for("我的包裹在哪", "th-TH") == "zh-Hant"
    assert language_for("where is it", "th-TH") == "en"
    assert language_for(None, "th-TH") == "th"


def test_last_purchase_in_natural_words_of_the_contacts_language() -> None:
    from tidings.kernel.localization import natural_ago

    three_days_ago = NOW - timedelta(days=3)
    assert natural_ago(three_days_ago, NOW, "th-TH") == "3 วันที่ผ่านมา"
    assert natural_ago(three_days_ago, NOW, "zh-Hant-TW") == "3 天前"
    assert natural_ago(three_days_ago, NOW, "en") == "3 days ago"
    assert natural_ago(three_days_ago, NOW, "xx-nonsense") == "3 days ago"


def test_a_missing_value_uses_the_templates_fallback_and_never_a_raw_placeholder() -> None:
    from tidings.kernel.templating import render_template

    text = "สวัสดีคุณ{{ contact.first_name | fallback('ลูกค้า') }} {{ contact.nickname }}!"
    assert render_template(text, {"contact": {"first_name": ""}}, field="t") == "สวัสดีคุณลูกค้า !"
    assert render_template(text, {"contact": {"first_name": "Ploy"}}, field="t") == ("สวัสดีคุณPloy !")
    assert render_template("{{ nothing.at.all | fallback('x') }}", {}, field="t") == "x"


def test_without_words_the_number_tells_the_language() -> None:
    """A Thai customer who shares a location (no words) is answered in Thai, not in the
    shop's Traditional Chinese."""
    from tidings.automation.answers import locale_of_country

    assert language_for("", locale_of_country("TH") or "zh-Hant-TW") == "th"
    assert language_for(None, locale_of_country("HK") or "en") == "zh-Hant"
    assert locale_of_country("FR") is None and locale_of_country(None) is None
