"""Sentiment, activity score and churn risk (A7): pure rules on a virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tidings.automation.scoring import (
    Interactions,
    SentimentLexicon,
    activity_score,
    churn_risk,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LEXICON = SentimentLexicon.built_in()


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("ของสวยมาก ชอบมากค่ะ ขอบคุณนะคะ", 0.8, 1.0),
        ("แย่มาก ผิดหวังสุดๆ", 0.0, 0.2),
        ("ไม่ดีเลยค่ะ", 0.0, 0.45),  # a negated positive
        ("非常满意，谢谢！", 0.8, 1.0),
        ("太差了，很失望", 0.0, 0.2),
        ("不好", 0.0, 0.45),
        ("Great service, thank you!", 0.8, 1.0),
        ("terrible, the worst shop ever", 0.0, 0.2),
        ("not good", 0.0, 0.45),
        ("ok", 0.5, 0.5),  # nothing known: neutral
        ("", 0.5, 0.5),
    ],
)
def test_sentiment_reads_three_languages_with_negation(text: str, low: float, high: float) -> None:
    assert low <= LEXICON.score(text) <= high


def test_activity_score_weighs_recency_frequency_and_enquiries() -> None:
    assert activity_score(Interactions([], []), NOW) == 0
    today = [NOW - timedelta(hours=h) for h in (1, 30, 80)]
    busy = activity_score(Interactions(today, today[:2]), NOW)
    quiet = activity_score(Interactions([NOW - timedelta(days=20)], []), NOW)
    assert busy > quiet > 0
    assert busy == round(40 * 0.5 ** ((1 / 24) / 7) + 12 + 10)
    flood = [NOW - timedelta(hours=h) for h in range(40)]
    assert activity_score(Interactions(flood, flood), NOW) <= 100


def _weekly(per_week: list[int]) -> list[datetime]:
    """Messages spread over past weeks; ``per_week[0]`` is the last 7 days."""
    times = []
    for week, count in enumerate(per_week):
        for i in range(count):
            times.append(NOW - timedelta(days=7 * week + 1 + i))
    return sorted(times)


def test_churn_risk_needs_the_drop_and_a_sour_last_message() -> None:
    dropped = Interactions(_weekly([1, 3, 3, 3]), [])
    assert churn_risk(dropped, 0.2, NOW)
    assert not churn_risk(dropped, 0.6, NOW)  # happy customers may write less
    assert not churn_risk(dropped, None, NOW)
    assert not churn_risk(Interactions(_weekly([3, 3, 3, 3]), []), 0.1, NOW)  # no drop
    assert not churn_risk(Interactions(_weekly([1, 1, 1, 1]), []), 0.1, NOW)  # never busy
