"""Finding the same person under two contacts (C3), pure: blocking, then scoring.

The same customer writing from two numbers is common (18% in the seed's shops), so the phone
cannot find them. Two contacts are suggested as one person when their names are at least
80% alike (rapidfuzz's token-sort ratio: order and case do not matter) **and** something else
backs it up: the same e-mail, or the same SKU bought by both within 90 days. A name alone is
not enough: there are many Somchais.

Comparing every pair of a million contacts is 5 × 10¹¹ comparisons, so pairs are only made
inside blocks of contacts that share a key (blocking): the e-mail, and for the name its first
word with the first three letters of its last, and its last word with the first three of its
first (so a typo in one word still leaves the other key intact); for a name in Chinese
characters, its first two and its last two characters. Blocks larger than ``BLOCK_LIMIT`` are
too common to tell anyone apart and are skipped (reported in the result).
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rapidfuzz import fuzz

NAME_THRESHOLD = 80.0
BLOCK_LIMIT = 400
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
    else:
        keys.add(f"a:{ordered[0]}|{ordered[-1][:3]}")
        keys.add(f"b:{ordered[-1]}|{ordered[0][:3]}")
    return keys


def find_candidates(
    people: Iterable[Person],
    purchases: Mapping[int, set[str]],
    *,
    threshold: float = NAME_THRESHOLD,
    block_limit: int = BLOCK_LIMIT,
) -> Findings:
    """Pairs likely to be one person, best first; ``purchases`` holds each contact's SKUs
    bought in the last 90 days."""
    blocks: dict[str, list[Person]] = defaultdict(list)
    for person in people:
        for key in blocking_keys(person):
            blocks[key].append(person)
    findings = Findings([])
    seen: set[tuple[int, int]] = set()
    keys_of: dict[int, str] = {}
    for key, members in blocks.items():
        if len(members) < 2:
            continue
        if len(members) > block_limit:
            findings.skipped_blocks.append(key)
            continue
        for i, left in enumerate(members):
            for right in members[i + 1 :]:
                pair = (left.id, right.id) if left.id < right.id else (right.id, left.id)
                if pair in seen:
                    continue
                seen.add(pair)
                findings.compared += 1
                found = judge_pair(left, right, purchases, threshold, keys_of)
                if found is not None:
                    findings.candidates.append(found)
    findings.candidates.sort(key=lambda c: (-c.score, c.first, c.second))
    return findings


def judge_pair(
    left: Person,
    right: Person,
    purchases: Mapping[int, set[str]],
    threshold: float = NAME_THRESHOLD,
    keys_of: dict[int, str] | None = None,
) -> Candidate | None:
    cache = keys_of if keys_of is not None else {}
    a = cache.get(left.id) or cache.setdefault(left.id, name_key(left.name))
    b = cache.get(right.id) or cache.setdefault(right.id, name_key(right.name))
    if not a or not b:
        return None
    similarity = fuzz.token_sort_ratio(a, b, processor=None)
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
