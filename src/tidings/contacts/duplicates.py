"""Finding the same person under two contacts (C3), pure: blocking, then scoring.

The same customer writing from two numbers is common (18% in the seed's shops), so the phone
cannot find them. Two contacts are suggested as one person when their names are at least
80% alike (the Levenshtein ratio of the names with their words sorted, computed by
rapidfuzz: order, case and punctuation do not matter) **and** something else
backs it up: the same e-mail, or the same SKU bought by both within 90 days. A name alone is
not enough: there are many Somchais.

Comparing every pair of a million contacts is 5 × 10¹¹ comparisons, so pairs are only made
inside blocks of contacts that share a key (blocking): the e-mail, and for the name each word
whole with the first and with the last four letters of the other (so that one typo still
leaves a key intact); for a name in Chinese characters, its first two and its last two
characters. Blocks larger than ``BLOCK_LIMIT`` are
too common to tell anyone apart and are skipped (reported in the result).
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rapidfuzz.distance import Levenshtein

NAME_THRESHOLD = 80.0
BLOCK_LIMIT = 5000  # evidence groups keep the comparisons inside a block few
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_NOT_WORD = re.compile(r"[^\w]+")


@dataclass(frozen=True)
class Person:
    id: int
    name: str | None
    email: str | None


@dataclass(frozen=True)
class Candidate:
    first: int  # the lower id
    second: int
    name_similarity: float
    reasons: tuple[str, ...]

    @property
    def score(self) -> float:
        """For ordering: the name's similarity, plus 10 per piece of evidence."""
        return self.name_similarity + 10 * (len(self.reasons) - 1)


@dataclass
class Findings:
    candidates: list[Candidate]
    compared: int = 0
    skipped_blocks: list[str] = field(default_factory=list)


def name_key(name: str | None) -> str:
    """A name folded for comparing: full-width to plain, case folded, punctuation to spaces."""
    if not name:
        return ""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return " ".join(_NOT_WORD.sub(" ", folded).split())


def blocking_keys(person: Person) -> set[str]:
    keys: set[str] = set()
    if person.email:
        keys.add("e:" + person.email.casefold())
    folded = name_key(person.name)
    if not folded:
        return keys
    words = folded.split()
    if len(words) == 1 and _HAN.search(folded):
        compact = words[0]
        if len(compact) >= 3:
            keys.update({"h:" + compact[:2], "t:" + compact[-2:]})
        else:
            keys.add("h:" + compact)
        return keys
    ordered = sorted(words)
    if len(ordered) == 1:
        keys.add("n:" + ordered[0])
        return keys
    low, high = ordered[0], ordered[-1]
    # Each word whole, with a piece of the other that one typo rarely spoils at both ends: its
    # first and its last four letters (a short word: its first and last letter, so that a
    # typo in it still leaves a block — the long word beside it keeps that block small).
    for whole, other in ((low, high), (high, low)):
        sizes = ([4] if len(other) >= 5 else []) + ([1] if len(other) <= 6 else [])
        for size in sizes:  # both near the boundary: a typo may add or drop a letter
            keys.update({f"s{size}:{whole}|{other[:size]}", f"e{size}:{whole}|{other[-size:]}"})
    return keys


def find_candidates(
    people: Iterable[Person],
    purchases: Mapping[int, set[str]],
    *,
    threshold: float = NAME_THRESHOLD,
    block_limit: int = BLOCK_LIMIT,
) -> Findings:
    """Pairs likely to be one person, best first; ``purchases`` holds each contact's SKUs
    bought in the last 90 days.

    Inside a block only pairs that share a piece of evidence (an e-mail or a SKU) are
    compared, since a pair without one cannot be suggested: that keeps a million contacts to
    seconds."""
    blocks: dict[str, list[Person]] = defaultdict(list)
    evidence: dict[int, set[str]] = {}
    for person in people:
        tokens = {"@" + person.email.casefold()} if person.email else set()
        tokens.update(purchases.get(person.id, ()))
        if not tokens:
            continue  # nothing could back a suggestion up
        evidence[person.id] = tokens
        for key in blocking_keys(person):
            blocks[key].append(person)
    findings = Findings([])
    seen: set[tuple[int, int]] = set()
    sorted_names: dict[int, str] = {}
    for key, members in blocks.items():
        if len(members) < 2:
            continue
        if len(members) > block_limit:
            findings.skipped_blocks.append(key)
            continue
        sharing: dict[str, list[Person]] = defaultdict(list)
        for member in members:
            for token in evidence[member.id]:
                sharing[token].append(member)
        for group in sharing.values():
            for i, left in enumerate(group):
                for right in group[i + 1 :]:
                    pair = (left.id, right.id) if left.id < right.id else (right.id, left.id)
                    if pair in seen:
                        continue
                    seen.add(pair)
                    findings.compared += 1
                    found = judge_pair(left, right, purchases, threshold, sorted_names)
                    if found is not None:
                        findings.candidates.append(found)
    findings.candidates.sort(key=lambda c: (-c.score, c.first, c.second))
    return findings


def _sorted_name(person: Person, known: dict[int, str]) -> str:
    found = known.get(person.id)
    if found is None:
        found = known[person.id] = " ".join(sorted(name_key(person.name).split()))
    return found


def judge_pair(
    left: Person,
    right: Person,
    purchases: Mapping[int, set[str]],
    threshold: float = NAME_THRESHOLD,
    sorted_names: dict[int, str] | None = None,
) -> Candidate | None:
    known = sorted_names if sorted_names is not None else {}
    a, b = _sorted_name(left, known), _sorted_name(right, known)
    if not a or not b:
        return None
    # The Levenshtein ratio (C3) of the names with their words sorted, so that order does not
    # count; the sorting is done once per contact instead of once per pair.
    similarity = 100 * Levenshtein.normalized_similarity(a, b, score_cutoff=threshold / 100)
    if similarity < threshold:
        return None
    reasons = [f"names {similarity:.0f}% alike"]
    if left.email and right.email and left.email.casefold() == right.email.casefold():
        reasons.append("same e-mail")
    shared = sorted(purchases.get(left.id, set()) & purchases.get(right.id, set()))
    if shared:
        reasons.append("both bought " + ", ".join(shared[:3]) + " within 90 days")
    if len(reasons) == 1:
        return None  # a name alone is not enough
    first, second = sorted((left.id, right.id))
    return Candidate(first, second, round(similarity, 1), tuple(reasons))
