"""Built-in intents of customers' messages (A5), in Thai, Chinese and English.

Two stages. First, cues: each intent has cue phrases per language (matched as runs of words,
like keywords, so Thai and Chinese are cut by their dictionaries first) and a few English
patterns, each with a weight; some cues count against an intent ("where is your shop" is not a
parcel question). The highest score above the threshold wins; ties go to the intent listed
first (opting out and complaints outrank the rest, since missing them costs most). Cues are
precise and explain themselves, but miss what nobody wrote down. Second, when no cue fires, a
small learned model — logistic regression over character n-grams and words (scikit-learn),
trained at start-up on the labelled training set shipped beside this module — gives its best
guess, "no intent" included. Nothing is downloaded: the training data is in the package.

The held-out set (never used to choose cues or train) measures what this does on messages it
has not seen: ``tidings intents evaluate``; docs/automation.md has the report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from tidings.automation.language import normalise, teach, words

INTENTS = (
    "opt_out",
    "complaint",
    "human_handoff",
    "order_status",
    "store_location",
    "price",
)
THRESHOLD = 1.0


@dataclass(frozen=True)
class Cues:
    phrases: dict[str, float] = field(default_factory=dict)  # words in a row → weight
    patterns: dict[str, float] = field(default_factory=dict)  # regex on normalised text


CUES: dict[str, Cues] = {
    "opt_out": Cues(
        phrases={
            # Thai
            "ยกเลิกรับข่าวสาร": 2,
            "ไม่ต้องส่งมา": 2,
            "ไม่ต้องส่ง": 1.5,
            "เลิกส่ง": 2,
            "หยุดส่ง": 2,
            "ไม่อยากได้รับ": 2,
            "ไม่รับข่าวสาร": 2,
            "ลบเบอร์": 1.5,
            "อย่าส่ง": 2,
            "ไม่ต้องทัก": 1.5,
            # Chinese
            "退订": 2,
            "取消订阅": 2,
            "不要再发": 2,
            "别再发": 2,
            "不要再傳": 2,
            "不要再传": 2,
            "停止发送": 2,
            "不想收到": 2,
            "别发了": 2,
            "不要發": 2,
            "不要发": 1.5,
            "取消訂閱": 2,
            "退訂": 2,
            "別發了": 2,
            "別再發": 2,
            "不要再發": 2,
            # English
            "unsubscribe": 2,
            "opt out": 2,
            "stop sending": 2,
            "remove me": 2,
            "stop messaging": 2,
            "don't message": 2,
            "do not message": 2,
            "no more messages": 2,
            "stop texting": 2,
            "don't text": 2,
        },
        patterns={r"^\s*stop\s*[.!]*\s*$": 2, r"\bstop (all )?(the )?(promo|ads|spam)": 2},
    ),
    "complaint": Cues(
        phrases={
            # Thai
            "ผิดหวัง": 1.5,
            "แย่มาก": 1.5,
            "ของเสีย": 1.5,
            "ชำรุด": 1.5,
            "แตก": 1,
            "ไม่พอใจ": 1.5,
            "ร้องเรียน": 2,
            "ได้ของผิด": 1.5,
            "ส่งผิด": 1.2,
            "คืนเงิน": 1.2,
            "บริการแย่": 2,
            "ไม่ตรงปก": 1.5,
            "เสียหาย": 1.2,
            "โกง": 1.5,
            "ห่วย": 1.5,
            "ผิดสี": 1.2,
            "ไม่สุภาพ": 1.5,
            "พูดจาไม่ดี": 1.5,
            # Chinese
            "投诉": 2,
            "投訴": 2,
            "失望": 1.5,
            "坏了": 1.5,
            "壞了": 1.5,
            "破损": 1.5,
            "破損": 1.5,
            "退款": 1.2,
            "太差": 1.5,
            "不满意": 1.5,
            "不滿意": 1.5,
            "发错": 1.2,
            "寄錯": 1.2,
            "寄错": 1.2,
            "质量差": 1.5,
            "品質很差": 1.5,
            "骗": 1.2,
            "騙": 1.2,
            "态度差": 1.5,
            "態度很差": 1.5,
            # English
            "complaint": 2,
            "complain": 2,
            "disappointed": 1.5,
            "broken": 1.5,
            "damaged": 1.5,
            "refund": 1.2,
            "terrible": 1.5,
            "worst": 1.5,
            "wrong item": 1.5,
            "not happy": 1.5,
            "unacceptable": 1.5,
            "scam": 1.5,
            "scammed": 1.5,
            "awful": 1.5,
            "defective": 1.5,
            "rude": 1.5,
        },
    ),
    "human_handoff": Cues(
        phrases={
            # Thai
            "ขอคุยกับพนักงาน": 2,
            "คุยกับพนักงาน": 2,
            "ขอคุยกับคน": 2,
            "ติดต่อพนักงาน": 2,
            "ขอสายเจ้าหน้าที่": 2,
            "เจ้าหน้าที่": 1,
            "แอดมิน": 1,
            "พนักงาน": 0.8,
            "คนจริง": 1.5,
            "ไม่ใช่บอท": 1.5,
            "โทรกลับ": 1.2,
            "ติดต่อกลับ": 1.2,
            # Chinese
            "人工": 1.5,
            "真人": 1.5,
            "客服": 1,
            "转人工": 2,
            "轉人工": 2,
            "找人": 1,
            "打电话给我": 1.2,
            "打電話給我": 1.2,
            "联系我": 1.2,
            "聯絡我": 1.2,
            "不要机器人": 1.5,
            "不要機器人": 1.5,
            # English
            "human": 1.5,
            "real person": 2,
            "agent": 1,
            "representative": 1.5,
            "talk to someone": 2,
            "speak to someone": 2,
            "call me": 1.2,
            "not a bot": 1.5,
            "speak to a person": 2,
            "customer service": 1,
            "contact me": 1.2,
        },
    ),
    "order_status": Cues(
        phrases={
            # Thai
            "พัสดุ": 1.2,
            "ของถึง": 1.2,
            "ของยังไม่ได้": 1.5,
            "ยังไม่ได้ของ": 1.5,
            "ยังไม่ได้รับ": 1.2,
            "เลขพัสดุ": 1.5,
            "เลขแทรค": 1.5,
            "ติดตามพัสดุ": 2,
            "ส่งของ": 0.8,
            "จัดส่ง": 0.8,
            "ออเดอร์": 0.8,
            "คำสั่งซื้อ": 0.8,
            "ส่งยัง": 1.2,
            "ส่งหรือยัง": 1.2,
            "ถึงไหน": 1.5,
            "อยู่ไหน": 0.5,
            "เมื่อไหร่จะได้": 1.2,
            "เมื่อไรจะได้": 1.2,
            "ได้ของ": 0.8,
            "แทรค": 1.2,
            "ขนส่ง": 0.8,
            "ของมา": 0.6,
            "จะถึง": 1.0,
            "สถานะ": 1.0,
            "ส่งออก": 0.8,
            "ยังไม่มา": 1.5,
            "หรือยัง": 0.4,
            # Chinese
            "包裹": 1.2,
            "快递": 1.2,
            "快遞": 1.2,
            "物流": 1.2,
            "订单": 0.8,
            "訂單": 0.8,
            "单号": 1.5,
            "單號": 1.5,
            "到哪": 1.5,
            "发货": 1.2,
            "發貨": 1.2,
            "出货": 1.2,
            "出貨": 1.2,
            "寄出": 1.2,
            "还没收到": 1.5,
            "還沒收到": 1.5,
            "什么时候到": 1.5,
            "什麼時候到": 1.5,
            "几时到": 1.5,
            "幾時到": 1.5,
            "送到": 0.8,
            "追踪": 1.5,
            "追蹤": 1.5,
            "还没到": 1.5,
            "還沒到": 1.5,
            "沒到": 1.2,
            "没到": 1.2,
            # English
            "parcel": 1.2,
            "package": 0.8,
            "my package": 1.2,
            "order": 0.6,
            "tracking": 1.5,
            "shipped": 1.2,
            "shipping status": 1.5,
            "delivery": 0.8,
            "my order": 1.2,
            "order status": 2,
            "when will": 0.6,
            "not arrived": 1.5,
            "hasn't arrived": 1.5,
            "has not arrived": 1.5,
            "still waiting": 1,
            "where is my": 1.2,
            "arrive": 0.6,
            "dispatched": 1.2,
            "dispatch": 1.2,
            "courier": 1,
            "update on": 0.6,
            "ship": 0.6,
            "has come": 0.6,
            "nothing has": 0.6,
        },
        patterns={r"\b(track|tracking) (number|no|code)\b": 1},
    ),
    "store_location": Cues(
        phrases={
            # Thai
            "ร้านอยู่": 1.5,
            "หน้าร้าน": 1.5,
            "สาขา": 1.2,
            "ที่อยู่ร้าน": 2,
            "ร้านอยู่ที่ไหน": 2,
            "ไปร้าน": 1.2,
            "แผนที่": 1.2,
            "ใกล้ที่สุด": 1,
            "เปิดกี่โมง": 1.2,
            "ปิดกี่โมง": 1.2,
            "เดินทางไป": 1.2,
            "พิกัด": 1.5,
            "ร้านใกล้": 1.5,
            "ร้าน": 0.6,
            "เปิด": 0.5,
            "ไปยังไง": 1.0,
            # Chinese
            "门市": 1.5,
            "門市": 1.5,
            "门店": 1.5,
            "門店": 1.5,
            "分店": 1.5,
            "店在哪": 2,
            "地址": 1.2,
            "营业时间": 1.2,
            "營業時間": 1.2,
            "几点开": 1.2,
            "幾點開": 1.2,
            "怎么去": 1.2,
            "怎麼去": 1.2,
            "最近的店": 2,
            "实体店": 1.5,
            "實體店": 1.5,
            "店面": 1.5,
            "附近": 0.8,
            # English
            "store": 1,
            "shop": 0.8,
            "branch": 1.2,
            "address": 1.2,
            "opening hours": 1.5,
            "open today": 1,
            "nearest": 1,
            "directions": 1.2,
            "location": 1,
            "visit": 0.6,
            "where are you": 1.2,
            "near me": 1,
            "physical": 0.6,
        },
    ),
    "price": Cues(
        phrases={
            # Thai
            "ราคา": 1.5,
            "เท่าไหร่": 1.2,
            "เท่าไร": 1.2,
            "กี่บาท": 1.5,
            "ค่าส่ง": 1,
            "โปรโมชั่น": 1,
            "ส่วนลด": 1,
            "ผ่อน": 1,
            "ลดราคา": 1.2,
            "แพง": 0.8,
            "ราคาส่ง": 1.5,
            "ถูกกว่า": 1,
            # Chinese
            "多少钱": 1.5,
            "多少錢": 1.5,
            "价格": 1.5,
            "價格": 1.5,
            "价钱": 1.5,
            "價錢": 1.5,
            "几钱": 1.5,
            "幾錢": 1.5,
            "报价": 1.5,
            "報價": 1.5,
            "优惠": 1,
            "優惠": 1,
            "折扣": 1,
            "分期": 1,
            "便宜": 1,
            "批发": 1.2,
            "批發": 1.2,
            "运费": 1,
            "運費": 1,
            "贵": 0.6,
            "貴": 0.6,
            "多少": 0.8,
            # English
            "price": 1.5,
            "prices": 1.5,
            "how much": 1.5,
            "cost": 1.2,
            "costs": 1.2,
            "discount": 1,
            "instalments": 1,
            "installments": 1,
            "shipping fee": 1,
            "cheaper": 1,
            "expensive": 0.6,
            "quote": 1,
            "baht": 0.8,
        },
    ),
}

# Cues that speak against an intent when present (a shop's address is not a parcel's place).
AGAINST: dict[str, dict[str, float]] = {
    "order_status": {
        "ร้าน": 0.8,
        "สาขา": 1,
        "门市": 1,
        "門市": 1,
        "分店": 1,
        "store": 0.8,
        "branch": 1,
        "ราคา": 0.6,
        "多少钱": 0.6,
        "how much": 0.6,
    },
    "human_handoff": {"ขอบคุณ": 0.5, "thanks": 0.5, "thank you": 0.5},
    # Praise that mentions the price is feedback, not a question.
    "price": {
        "คืนเงิน": 1,
        "refund": 1,
        "退款": 1,
        "ขอบคุณ": 0.6,
        "thanks": 0.6,
        "谢谢": 0.6,
        "謝謝": 0.6,
    },
    # A question that names the price is about the price, wherever it is asked; a delivery
    # address is not the shop's.
    "store_location": {
        "ราคา": 0.6,
        "價格": 0.6,
        "价格": 0.6,
        "price": 0.6,
        "prices": 0.6,
        "my address": 1,
        "收件地址": 1,
        "ที่อยู่จัดส่ง": 1,
    },
}


@dataclass(frozen=True)
class Detection:
    intent: str | None
    score: float
    cues: tuple[str, ...]  # the cues that counted, for the trace


def _cut(phrase: str) -> tuple[str, ...]:
    return tuple(words(phrase))


NO_INTENT = "none"


class IntentModel:
    """The learned second stage: logistic regression over character 1-3-grams and words."""

    def __init__(self, examples: Sequence[Example]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union

        features = make_union(
            TfidfVectorizer(
                analyzer="char_wb", ngram_range=(1, 3), preprocessor=normalise, sublinear_tf=True
            ),
            TfidfVectorizer(analyzer=words, sublinear_tf=True),
        )
        self.pipeline: Any = make_pipeline(features, LogisticRegression(C=30, max_iter=2000))
        self.pipeline.fit([e.text for e in examples], [e.intent or NO_INTENT for e in examples])

    def predict(self, text: str) -> tuple[str | None, float]:
        return self.predict_many([text])[0]

    def predict_many(self, texts: Sequence[str]) -> list[tuple[str | None, float]]:
        """One call for many texts: scikit-learn's fixed cost per call is most of the cost of
        classifying one short message."""
        if not texts:
            return []
        found: list[tuple[str | None, float]] = []
        for probabilities in self.pipeline.predict_proba(list(texts)):
            best = int(probabilities.argmax())
            label = str(self.pipeline.classes_[best])
            found.append(((None if label == NO_INTENT else label), float(probabilities[best])))
        return found


@dataclass(frozen=True)
class IntentDetector:
    """Cues cut into words once, and the learned fallback; ``detect`` is pure."""

    phrases: tuple[tuple[str, tuple[tuple[tuple[str, ...], str, float], ...]], ...]
    patterns: tuple[tuple[str, tuple[tuple[re.Pattern[str], float], ...]], ...]
    against: dict[str, tuple[tuple[tuple[str, ...], str, float], ...]]
    model: IntentModel | None = None

    @classmethod
    def built_in(cls, training: Sequence[Example] | None = None) -> IntentDetector:
        """The shipped cues, with the model trained on ``training`` (the shipped training
        set by default; an empty list: cues only)."""
        every = [p for cues in CUES.values() for p in cues.phrases]
        every += [p for cues in AGAINST.values() for p in cues]
        teach(every)
        return cls(
            tuple(
                (intent, tuple((_cut(p), p, w) for p, w in CUES[intent].phrases.items()))
                for intent in INTENTS
            ),
            tuple(
                (
                    intent,
                    tuple((re.compile(p), w) for p, w in CUES[intent].patterns.items()),
                )
                for intent in INTENTS
            ),
            {
                intent: tuple((_cut(p), p, w) for p, w in cues.items())
                for intent, cues in AGAINST.items()
            },
            IntentModel(examples) if (examples := _training(training)) else None,
        )

    def detect(self, text: str | None) -> Detection:
        return self.detect_many([text])[0]

    def detect_many(self, texts: Sequence[str | None]) -> list[Detection]:
        """``detect`` for each text, with the learned fallback asked once for all the texts
        no cue settled."""
        found = [self._by_cues(text) for text in texts]
        if self.model is None:
            return found
        unsettled = [
            i
            for i, (text, d) in enumerate(zip(texts, found, strict=True))
            if d.intent is None and text and text.strip()
        ]
        guesses = self.model.predict_many([str(texts[i]) for i in unsettled])
        for i, (guessed, probability) in zip(unsettled, guesses, strict=True):
            if guessed is not None:
                found[i] = Detection(guessed, round(probability, 2), (f"model {probability:.2f}",))
        return found

    def _by_cues(self, text: str | None) -> Detection:
        if not text or not text.strip():
            return Detection(None, 0.0, ())
        said = words(text)
        plain = normalise(text)
        best = Detection(None, 0.0, ())
        patterns = dict(self.patterns)
        for intent, phrases in self.phrases:
            score, cues = 0.0, []
            for cut, phrase, weight in phrases:
                if cut and _has_run(said, cut):
                    score += weight
                    cues.append(phrase)
            for pattern, weight in patterns[intent]:
                if pattern.search(plain):
                    score += weight
                    cues.append(pattern.pattern)
            for cut, phrase, weight in self.against.get(intent, ()):
                if cut and _has_run(said, cut):
                    score -= weight
                    cues.append(f"-{phrase}")
            if score >= THRESHOLD and score > best.score:
                best = Detection(intent, round(score, 2), tuple(cues))
        return best


def _training(given: Sequence[Example] | None) -> list[Example]:
    return list(shipped_examples("training") if given is None else given)


@cache
def built_in_detector() -> IntentDetector:
    """One detector per process (training takes a fraction of a second)."""
    return IntentDetector.built_in()


def _has_run(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    size = len(needle)
    if size > len(haystack):
        return _spelled(haystack, needle)
    for i in range(len(haystack) - size + 1):
        if haystack[i] == needle[0] and tuple(haystack[i : i + size]) == tuple(needle):
            return True
    return _spelled(haystack, needle)


def _spelled(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """Thai/Chinese cues the cutter split differently in context: consecutive words that
    spell the cue exactly."""
    target = "".join(needle)
    if not target or target.isascii() or target not in "".join(haystack):
        return False
    for start in range(len(haystack)):
        spelled = ""
        for word in haystack[start:]:
            spelled += word
            if spelled == target:
                return True
            if not target.startswith(spelled):
                break
    return False


# --- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    text: str
    language: str
    intent: str | None  # None: no intent (a hard negative or small talk)


SHIPPED_SETS = {"training": "intents_training.jsonl", "held-out": "intents_holdout.jsonl"}


def shipped_examples(name: str) -> list[Example]:
    """A labelled set shipped with Tidings: ``training`` (cues were chosen and the model is
    trained on it) or ``held-out`` (written apart and never used for either)."""
    raw = resources.files("tidings.automation").joinpath(SHIPPED_SETS[name])
    return read_examples(raw.read_text(encoding="utf-8").splitlines())


def read_examples(lines: Iterable[str]) -> list[Example]:
    """JSON Lines of ``{"text", "language", "intent"}`` (``intent`` null for none).

    Raises:
        ValueError: naming the line number of a malformed line.
    """
    found = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text, language, intent = item["text"], item["language"], item["intent"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"line {number}: not an example ({error})") from None
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"line {number}: text must be a non-empty string")
        if intent is not None and intent not in INTENTS:
            raise ValueError(f"line {number}: unknown intent {intent!r}")
        found.append(Example(text, str(language), intent))
    return found


@dataclass(frozen=True)
class IntentScores:
    intent: str
    precision: float
    recall: float
    support: int


@dataclass(frozen=True)
class Report:
    examples: int
    accuracy: float
    per_intent: list[IntentScores]
    per_language: dict[str, float]
    mistakes: list[tuple[Example, str | None]]


def evaluate_detector(detector: IntentDetector, examples: Sequence[Example]) -> Report:
    predicted = [d.intent for d in detector.detect_many([e.text for e in examples])]
    right = [p == e.intent for p, e in zip(predicted, examples, strict=True)]
    scores = []
    for intent in INTENTS:
        said = sum(1 for p in predicted if p == intent)
        truly = sum(1 for e in examples if e.intent == intent)
        hits = sum(1 for p, e in zip(predicted, examples, strict=True) if p == intent == e.intent)
        scores.append(
            IntentScores(
                intent,
                precision=hits / said if said else 1.0,
                recall=hits / truly if truly else 1.0,
                support=truly,
            )
        )
    languages = sorted({e.language for e in examples})
    per_language = {
        language: sum(r for r, e in zip(right, examples, strict=True) if e.language == language)
        / sum(1 for e in examples if e.language == language)
        for language in languages
    }
    mistakes = [(e, p) for p, e, ok in zip(predicted, examples, right, strict=True) if not ok]
    return Report(
        examples=len(examples),
        accuracy=sum(right) / len(examples) if examples else 0.0,
        per_intent=scores,
        per_language=per_language,
        mistakes=mistakes,
    )
