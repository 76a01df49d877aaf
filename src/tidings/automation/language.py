"""Words in customers' messages, in Thai, Chinese and English (A2).

Thai and Chinese are written without spaces between words, so a keyword is not found by
splitting on spaces nor safely by substring ("ตา", eye, is inside "ตาก", to dry). Text is cut
into words by the libraries made for each script — pythainlp's dictionary-based ``newmm`` for
Thai, jieba for Chinese — and Latin text by Unicode word characters; a keyword matches when its
own words appear in a row. Pure: no I/O after the dictionaries are loaded (once per process,
bundled with the packages).
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

_THAI = re.compile(r"[\u0e00-\u0e7f]+")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_THAI_CHARS = "\u0e00-\u0e7f"
_HAN_CHARS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Latin (and other) words stop where Thai or Chinese begins: "L码多少钱" is "l" + 码多少钱.
_RUNS = re.compile(
    rf"(?P<thai>[{_THAI_CHARS}]+)|(?P<han>[{_HAN_CHARS}]+)"
    rf"|(?P<word>[^\W{_THAI_CHARS}{_HAN_CHARS}]+)"
)
_lock = threading.Lock()


_thai_terms: set[str] = set()
_thai: list[Any] = []  # the current Thai cutter, rebuilt when keywords are taught


def _thai_cutter() -> Any:
    if not _thai:
        _learn_built_in_vocabulary()
    if not _thai:
        _rebuild_thai()
    return _thai[0]


_learned_built_ins: list[bool] = []


def _learn_built_in_vocabulary() -> None:
    """Teach the cutters every built-in vocabulary (intent cues, the sentiment lexicon, the
    default keyword groups) before their first use, all at once. The cutters are shared, and
    what they were taught changes how a text is cut: teaching in whatever order components
    happened to load would make intent detection depend on it."""
    if _learned_built_ins:
        return
    _learned_built_ins.append(True)
    from tidings.automation import defaults, intents, scoring

    vocabulary = [
        *(p for cues in intents.CUES.values() for p in cues.phrases),
        *(p for cues in intents.AGAINST.values() for p in cues),
        *scoring.POSITIVE,
        *scoring.NEGATIVE,
        *scoring.NEGATIONS,
        *scoring.INTENSIFIERS,
        *(t for terms in defaults.KEYWORDS.values() for t in terms),
    ]
    teach(sorted(set(vocabulary)))


def _rebuild_thai() -> None:
    from pythainlp.corpus.common import thai_words
    from pythainlp.tokenize import Tokenizer

    words_known = set(thai_words()) | _thai_terms
    _thai[:] = [Tokenizer(custom_dict=words_known, engine="newmm", keep_whitespace=False)]


@cache
def _chinese_cutter() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def _cutters_ready() -> None:
    if not _learned_built_ins:
        _learn_built_in_vocabulary()


_taught: set[str] = set()
# Runs the cutters keep whole only because a term taught them, not their own dictionary:
# what one workspace taught, another's keywords must be able to see through (see
# KeywordIndex.found_in).
_compounds: set[str] = set()


@cache
def _thai_dictionary() -> frozenset[str]:
    from pythainlp.corpus.common import thai_words

    return frozenset(thai_words())


def teach(terms: Iterable[str]) -> None:
    """Make the cutters keep these keywords whole. Dictionaries know compounds: newmm reads
    "ราคาแพงเกินไป" as "ราคาแพง" + "เกินไป", so "แพงเกินไป" (too expensive) would be missed
    until it is a word of its own; jieba likewise for "分期付款"."""
    listed = [normalise(t.strip()) for t in terms]
    chinese = [t for t in listed if _HAN.search(t) and t not in _taught]
    thai = {run for t in listed for run in _THAI.findall(t)} - _thai_terms
    with _lock:
        if chinese:
            cutter = _chinese_cutter()
            for term in chinese:
                for run in _HAN.findall(term):
                    if not cutter.FREQ.get(run):
                        _compounds.add(run)
                    cutter.add_word(run, freq=50_000)
                _taught.add(term)
        if thai:
            _compounds.update(thai - _thai_dictionary())
            _thai_terms.update(thai)
            _rebuild_thai()


def normalise(text: str) -> str:
    """NFKC (full-width letters and digits become plain ones) and case folded. NFKC splits
    Thai SARA AM (ำ) into NIKHAHIT + SARA AA, which no dictionary knows ("ดำ" would be cut
    as "ด" + "ํา"): it is put back together."""
    return unicodedata.normalize("NFKC", text).casefold().replace("\u0e4d\u0e32", "\u0e33")


def words(text: str) -> list[str]:
    """The words of a message, in order, normalised."""
    _cutters_ready()
    found: list[str] = []
    for match in _RUNS.finditer(normalise(text)):
        if match.group("thai"):
            cutter = _thai_cutter()
            found.extend(w for w in cutter.word_tokenize(match.group("thai")) if w.strip())
        elif match.group("han"):
            with _lock:
                found.extend(w for w in _chinese_cutter().cut(match.group("han")) if w.strip())
        else:
            found.append(match.group("word"))
    return found


def _segment(token: str, vocabulary: Callable[[str], bool]) -> list[str] | None:
    """``token`` cut into the fewest words that ``vocabulary`` knows (the maximal matching
    the Thai cutter does), or None when it cannot be cut that way."""
    longest = 30
    best: list[list[str] | None] = [[]] + [None] * len(token)
    for end in range(1, len(token) + 1):
        for start in range(max(0, end - longest), end):
            before, piece = best[start], token[start:end]
            shorter = best[end] is None or len(before or ()) + 1 < len(best[end] or ())
            if before is not None and shorter and vocabulary(piece):
                best[end] = [*before, piece]
    return best[len(token)]


def _contains_run(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    size = len(needle)
    if size == 0 or size > len(haystack):
        return False
    first = needle[0]
    return any(
        haystack[i] == first and list(haystack[i : i + size]) == list(needle)
        for i in range(len(haystack) - size + 1)
    )


def _joined_chars(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """A Thai or Chinese keyword whose words the cutter split differently in context: found
    when consecutive message words spell it exactly (boundaries still respected)."""
    target = "".join(needle)
    if target not in "".join(haystack):
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


@dataclass(frozen=True)
class KeywordGroupTerms:
    name: str
    terms: tuple[str, ...]


@dataclass(frozen=True)
class KeywordIndex:
    """The keyword groups of a workspace, each term cut into words once."""

    groups: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]
    own: frozenset[str] = frozenset()  # the words of its own terms

    @classmethod
    def of(cls, groups: Iterable[KeywordGroupTerms]) -> KeywordIndex:
        listed = list(groups)
        teach(term for group in listed for term in group.terms)
        cut = tuple(
            (group.name, tuple(tuple(words(term)) for term in group.terms if words(term)))
            for group in listed
        )
        own = frozenset(word for _, terms in cut for term in terms for word in term)
        return cls(cut, own)

    def found_in(self, text: str | None) -> list[str]:
        """The names of the groups one of whose terms the text contains.

        The cutters are shared by the whole process, and a word another workspace taught
        them ("ผ่อนได้ไหม") is kept whole: it is cut again here with the dictionary and this
        index's own words only, so what others taught never hides this workspace's keywords.
        """
        if not text:
            return []
        said = words(text)
        readings = [said]
        foreign = [w for w in said if w in _compounds and w not in self.own]
        if foreign:
            readings.append(self._see_through(said))
        return [
            name
            for name, terms in self.groups
            if any(
                _contains_run(reading, term) or _joined_chars(reading, term)
                for reading in readings
                for term in terms
            )
        ]

    def _see_through(self, said: list[str]) -> list[str]:
        chinese = _chinese_cutter()

        def known(piece: str) -> bool:
            if piece in self.own:
                return True
            if piece in _compounds:
                return False
            if _HAN.fullmatch(piece):
                return bool(chinese.FREQ.get(piece))
            return piece in _thai_dictionary()

        seen: list[str] = []
        for word in said:
            pieces = _segment(word, known) if word in _compounds and word not in self.own else None
            seen.extend(pieces or [word])
        return seen


def check_terms(terms: Any) -> list[str]:
    """A group's terms: 1-100 distinct texts of 1-100 characters that contain a word.

    Raises:
        ValueError: with the reason.
    """
    if not isinstance(terms, list) or not terms:
        raise ValueError("a list of 1-100 words or phrases")
    if len(terms) > 100:
        raise ValueError("at most 100 terms")
    cleaned: list[str] = []
    for index, term in enumerate(terms):
        if not isinstance(term, str) or not 1 <= len(term.strip()) <= 100:
            raise ValueError(f"term {index + 1}: a text of 1-100 characters")
        if not words(term):
            raise ValueError(f"term {index + 1}: {term!r} has no word in it")
        if normalise(term.strip()) not in {normalise(t) for t in cleaned}:
            cleaned.append(term.strip())
    return cleaned


def streaks(history: Sequence[Mapping[str, int]], found: Iterable[str]) -> dict[str, int]:
    """For each group found in the newest message, how many consecutive messages in a row
    (this one included) contained it; ``history`` holds the previous messages' streaks, the
    latest last."""
    previous = history[-1] if history else {}
    return {name: previous.get(name, 0) + 1 for name in found}
