"""Activity score, sentiment and churn risk (A7). Pure.

**Sentiment** is lexicon-based: positive and negative words per language, matched as words
after the Thai and Chinese cutters. A negation just before a word flips it ("ไม่ดี", "not
good"; Chinese dictionaries keep "不好" and "不错" whole, so the lexicon lists them), an
intensifier next to it strengthens it ("มาก" after, "很"/"太" before, "very").
The sum goes through a logistic curve to a score from 0 (angry) to 1 (delighted); 0.5 is
neutral or unknown. Limits, said plainly: no sarcasm, no context beyond the message, emoji
only from a short list, and words not in the lexicon count for nothing — it is a signal for
routing and risk flags, not a judgement of a customer.

**Activity score** (0-100) from recency of the last message (up to 40 points, halving every
7 days), frequency over 28 days (up to 40: 4 points a message) and product or price enquiries
over 28 days (up to 20: 5 points each).

**Churn risk**: interactions fell from about 3 a week (average of the three weeks before the
last one ≥ 2.5) to about 1 (≤ 1 in the last 7 days) and the latest sentiment is below 0.3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tidings.automation.language import teach, words

POSITIVE = {
    # Thai
    "ดี": 1,
    "ชอบ": 1.5,
    "สวย": 1.5,
    "ขอบคุณ": 1,
    "ประทับใจ": 2,
    "เยี่ยม": 2,
    "ถูกใจ": 1.5,
    "รัก": 1.5,
    "สุดยอด": 2,
    "เร็ว": 0.5,
    "ปัง": 1.5,
    "น่ารัก": 1,
    # Chinese
    "好": 1,
    "喜欢": 1.5,
    "喜歡": 1.5,
    "漂亮": 1.5,
    "谢谢": 1,
    "謝謝": 1,
    "满意": 1.5,
    "滿意": 1.5,
    "不错": 1.5,
    "不錯": 1.5,
    "棒": 2,
    "赞": 2,
    "讚": 2,
    "推荐": 1,
    "推薦": 1,
    "快": 0.5,
    "爱": 1.5,
    "愛": 1.5,
    # English
    "good": 1,
    "great": 1.5,
    "love": 1.5,
    "thanks": 1,
    "thank": 1,
    "excellent": 2,
    "amazing": 2,
    "perfect": 2,
    "happy": 1.5,
    "beautiful": 1.5,
    "fast": 0.5,
    "nice": 1,
    "👍": 1,
    "❤️": 1.5,
    "😍": 1.5,
    "😊": 1,
}
NEGATIVE = {
    # Thai
    "แย่": 2,
    "ห่วย": 2,
    "ผิดหวัง": 2,
    "ช้า": 1,
    "เสีย": 1,
    "แพง": 0.5,
    "โกง": 2.5,
    "ไม่พอใจ": 2,
    "โมโห": 2.5,
    "เบื่อ": 1.5,
    "ชำรุด": 1.5,
    "ร้องเรียน": 2,
    "แตก": 1,
    # Chinese
    "差": 2,
    "失望": 2,
    "慢": 1,
    "坏": 1.5,
    "壞": 1.5,
    "贵": 0.5,
    "貴": 0.5,
    "骗": 2.5,
    "騙": 2.5,
    "不好": 1.5,
    "不满": 2,
    "不滿": 2,
    "生气": 2.5,
    "生氣": 2.5,
    "投诉": 2,
    "投訴": 2,
    "烂": 2,
    "爛": 2,
    "退款": 1,
    # English
    "bad": 1.5,
    "terrible": 2.5,
    "awful": 2.5,
    "worst": 2.5,
    "disappointed": 2,
    "slow": 1,
    "broken": 1.5,
    "angry": 2.5,
    "scam": 2.5,
    "refund": 1,
    "expensive": 0.5,
    "never": 0.5,
    "hate": 2.5,
    "useless": 2,
    "😡": 2.5,
    "😠": 2,
    "👎": 1.5,
}
NEGATIONS = {"ไม่", "不", "沒", "没", "别", "別", "not", "no", "never", "don't", "isn't"}
INTENSIFIERS = {
    "มาก": 1.5,
    "สุดๆ": 2,
    "很": 1.5,
    "太": 1.5,
    "非常": 2,
    "very": 1.5,
    "so": 1.3,
    "really": 1.5,
    "super": 1.5,
}
NEUTRAL = 0.5


@dataclass(frozen=True)
class SentimentLexicon:
    @classmethod
    def built_in(cls) -> SentimentLexicon:
        teach([*POSITIVE, *NEGATIVE, *NEGATIONS, *INTENSIFIERS])
        return cls()

    def score(self, text: str | None) -> float:
        """0 (negative) … 0.5 (neutral or unknown) … 1 (positive)."""
        said = words(text or "") + [ch for ch in (text or "") if ch in "👍❤😍😊😡😠👎"]
        total = 0.0
        for index, word in enumerate(said):
            weight = POSITIVE.get(word, 0.0) - NEGATIVE.get(word, 0.0)
            if weight == 0.0:
                continue
            before = said[max(0, index - 2) : index]
            if any(w in NEGATIONS for w in before):
                weight = -weight * 0.8
            boost = max(
                [INTENSIFIERS.get(w, 1.0) for w in before]
                + [INTENSIFIERS.get(said[index + 1], 1.0) if index + 1 < len(said) else 1.0]
            )
            total += weight * boost
        return round(1 / (1 + math.exp(-total / 1.5)), 3)


@dataclass(frozen=True)
class Interactions:
    """A contact's recent messages to us (times) and enquiries (times), newest last."""

    messages: Sequence[datetime]
    enquiries: Sequence[datetime]


def activity_score(history: Interactions, now: datetime) -> int:
    window = now - timedelta(days=28)
    recent = [t for t in history.messages if window < t <= now]
    if not history.messages:
        return 0
    days_since = max(0.0, (now - max(history.messages)).total_seconds() / 86_400)
    recency: float = 40 * 0.5 ** (days_since / 7)
    frequency = min(40, 4 * len(recent))
    enquiries = min(20, 5 * sum(1 for t in history.enquiries if window < t <= now))
    return round(recency + frequency + enquiries)


def churn_risk(history: Interactions, latest_sentiment: float | None, now: datetime) -> bool:
    last_week = sum(1 for t in history.messages if now - timedelta(days=7) < t <= now)
    before = sum(
        1 for t in history.messages if now - timedelta(days=28) < t <= now - timedelta(days=7)
    )
    fell = before / 3 >= 2.5 and last_week <= 1
    return fell and latest_sentiment is not None and latest_sentiment < 0.3
