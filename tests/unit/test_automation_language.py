"""Keywords in Thai, Chinese and English (A2) and the rules' pure parts: triggers, the guard."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tidings.automation.answers import text_in
from tidings.automation.domain import (
    MAX_DEPTH,
    Guard,
    RuleDefinition,
    fires,
    guard_verdict,
)
from tidings.automation.language import (
    KeywordGroupTerms,
    KeywordIndex,
    check_terms,
    streaks,
    words,
)

INDEX = KeywordIndex.of(
    [
        KeywordGroupTerms("discount", ("ส่วนลด", "折扣", "discount", "โปรโมชั่น")),
        KeywordGroupTerms("too expensive", ("แพงเกินไป", "太贵", "贵", "too expensive")),
        KeywordGroupTerms("instalment", ("ผ่อน", "分期付款", "instalment")),
        KeywordGroupTerms("eye", ("ตา",)),
    ]
)


@pytest.mark.parametrize(
    ("message", "found"),
    [
        ("มีส่วนลดไหมคะ", ["discount"]),
        ("有折扣吗？", ["discount"]),
        ("Any DISCOUNT today?", ["discount"]),
        ("ｄｉｓｃｏｕｎｔ", ["discount"]),  # full-width letters
        ("ราคาแพงเกินไปค่ะ", ["too expensive"]),  # a compound the dictionary would keep whole
        ("太贵了", ["too expensive"]),
        ("真的很贵", ["too expensive"]),
        ("this is too expensive!!", ["too expensive"]),
        ("可以分期付款吗", ["instalment"]),
        ("ผ่อนได้ไหม", ["instalment"]),
        ("ตาเจ็บ", ["eye"]),
        # Hard negatives: the letters are there, the word is not.
        ("วันนี้อากาศร้อนตากผ้าได้", []),  # ตา inside ตาก (to dry)
        ("贵州有店吗", []),  # 贵 inside 贵州 (Guizhou)
        ("discounted? no, discountenance", []),  # other English words
        ("expensive, but not too", []),  # the words out of order
        ("", []),
    ],
)
def test_keywords_are_found_as_words_in_each_language(message: str, found: list[str]) -> None:
    assert INDEX.found_in(message) == found


def test_words_are_cut_by_script() -> None:
    assert words("มีส่วนลดไหม Discount 折扣吗") == ["มี", "ส่วนลด", "ไหม", "discount", "折扣", "吗"]


def test_terms_are_checked_and_deduplicated() -> None:
    assert check_terms(["Discount", "discount ", "ส่วนลด"]) == ["Discount", "ส่วนลด"]
    for bad in ([], ["!!"], [""], "discount", [1]):
        with pytest.raises(ValueError, match=r"term|list"):
            check_terms(bad)


def test_streaks_count_consecutive_messages() -> None:
    assert streaks([], ["a"]) == {"a": 1}
    assert streaks([{"a": 2, "b": 1}], ["a"]) == {"a": 3}
    assert streaks([{"b": 1}], ["a", "b"]) == {"a": 1, "b": 2}


def test_triggers_fire_on_their_events_only() -> None:
    rule = RuleDefinition.model_validate(
        {
            "trigger": {"on": "tag_added", "tag": "VIP  Gold"},
            "actions": [{"do": "add_score", "by": 1}],
        }
    )
    assert fires(rule.trigger, "tag.added", {"tag": "vip gold"})
    assert not fires(rule.trigger, "tag.removed", {"tag": "vip gold"})
    assert not fires(rule.trigger, "tag.added", {"tag": "vip"})
    keyword = RuleDefinition.model_validate(
        {
            "trigger": {"on": "keyword", "keyword": "Discount"},
            "actions": [{"do": "add_score", "by": 1}],
        }
    )
    assert fires(keyword.trigger, "keyword.detected", {"keyword": "discount"})
    field = RuleDefinition.model_validate(
        {
            "trigger": {"on": "field_changed", "field": "tier"},
            "actions": [{"do": "add_score", "by": 1}],
        }
    )
    assert fires(field.trigger, "contact.updated", {"fields": ["name", "tier"]})
    assert not fires(field.trigger, "contact.updated", {"fields": ["name"]})


def test_the_guard_stops_deep_chains_and_too_many_firings() -> None:
    guard = Guard(times=2, per=timedelta(hours=1))
    assert guard_verdict(guard, depth=0, recent_firings=1).allowed
    assert not guard_verdict(guard, depth=0, recent_firings=2).allowed
    assert not guard_verdict(guard, depth=MAX_DEPTH, recent_firings=0).allowed


def test_a_rule_cannot_use_sequence_step_conditions() -> None:
    with pytest.raises(ValueError, match="sequence's steps"):
        RuleDefinition.model_validate(
            {
                "trigger": {"on": "message_received"},
                "condition": {"read": "welcome"},
                "actions": [{"do": "add_score", "by": 1}],
            }
        )


def test_scheduled_rules_run_at_local_times_across_daylight_saving() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from tidings.automation.domain import OnSchedule, next_run

    bangkok = ZoneInfo("Asia/Bangkok")
    daily = OnSchedule(on="schedule", every=timedelta(days=1), at="09:00")
    before_nine = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 08:00 in Bangkok
    assert next_run(daily, before_nine, bangkok) == datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    at_nine = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    assert next_run(daily, at_nine, bangkok) == datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    weekly = OnSchedule(on="schedule", every=timedelta(weeks=1), at="09:00", weekday="mon")
    tuesday = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    assert next_run(weekly, tuesday, bangkok) == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    hourly = OnSchedule(on="schedule", every=timedelta(hours=6))
    assert next_run(hourly, tuesday, bangkok) == tuesday + timedelta(hours=6)
    london = ZoneInfo("Europe/London")  # clocks go back at 02:00 on Sunday 2026-10-25
    saturday = datetime(2026, 10, 24, 6, 0, tzinfo=UTC)  # 07:00 BST
    first = next_run(daily, saturday, london)
    second = next_run(daily, first, london)
    assert first == datetime(2026, 10, 24, 8, 0, tzinfo=UTC)  # 09:00 BST
    assert second == datetime(2026, 10, 25, 9, 0, tzinfo=UTC)  # 09:00 GMT
    assert second - first == timedelta(hours=25)
    with pytest.raises(ValueError, match="weekday goes with"):
        OnSchedule(on="schedule", every=timedelta(days=1), weekday="mon")
    with pytest.raises(ValueError, match="needs a condition"):
        RuleDefinition.model_validate(
            {
                "trigger": {"on": "schedule", "every": "1d"},
                "actions": [{"do": "add_score", "by": 1}],
            }
        )


def test_a_reply_text_is_picked_by_language_then_by_base_language() -> None:
    texts = {"th": "สวัสดี", "zh": "你好", "en": "Hello"}
    assert text_in("th", "Hi", texts) == "สวัสดี"
    assert text_in("zh-Hant", "Hi", texts) == "你好"
    assert text_in("zh-Hans", "Hi", {"zh-hans": "简体", "zh": "你好"}) == "简体"
    assert text_in("en", "Hi", {"th": "สวัสดี"}) == "Hi"
    assert text_in("th", "Hi", {}) == "Hi"


def test_another_workspaces_longer_term_does_not_hide_a_keyword() -> None:
    """The word cutters are shared by the process: a term one workspace teaches ("ผ่อนได้ไหม",
    kept whole from then on) must not change what another workspace's keywords find."""
    ours = KeywordIndex.of([KeywordGroupTerms("instalment", ("ผ่อน", "分期"))])
    assert ours.found_in("ผ่อนได้ไหม") == ["instalment"]
    assert ours.found_in("可以分期吗") == ["instalment"]
    KeywordIndex.of([KeywordGroupTerms("ask", ("ผ่อนได้ไหม", "可以分期吗"))])  # elsewhere
    assert ours.found_in("ผ่อนได้ไหม") == ["instalment"]
    assert ours.found_in("可以分期吗") == ["instalment"]
    # And the hard negatives still hold after the teaching.
    eye = KeywordIndex.of([KeywordGroupTerms("eye", ("ตา",))])
    KeywordIndex.of([KeywordGroupTerms("laundry", ("ตากผ้าได้",))])
    assert eye.found_in("วันนี้อากาศร้อนตากผ้าได้") == []
