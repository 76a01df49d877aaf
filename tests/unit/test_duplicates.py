"""Finding one person under two contacts (C3): names at least 80% alike plus evidence; a
name alone is not enough; blocking keeps a typo in one word findable."""

from __future__ import annotations

from tidings.contacts.duplicates import Person, blocking_keys, find_candidates, judge_pair

BOUGHT = {1: {"APL-IP15PM"}, 2: {"APL-IP15PM"}, 3: {"APL-IP15PM"}, 5: {"TEA-GZ"}, 6: {"TEA-GZ"}}


def test_alike_names_with_a_shared_purchase_or_e_mail_are_suggested() -> None:
    people = [
        Person(1, "Somchai Jaidee", None),
        Person(2, "Jaidee, SOMCHAI", None),  # order, case and punctuation do not matter
        Person(3, "Somchai Srisuk", None),  # same purchase, another man
        Person(4, "Somchay Jaidee", "s@x.th"),  # a typo in the first name
        Person(7, "somchai jaidee", "S@X.TH"),
        Person(5, "王小明", None),
        Person(6, "王小明", None),
        Person(8, "Somchai Jaidee", None),  # alike, but nothing backs it up
    ]
    found = find_candidates(people, BOUGHT)
    pairs = {(c.first, c.second): c for c in found.candidates}
    assert set(pairs) == {(1, 2), (4, 7), (5, 6)}
    assert pairs[(1, 2)].reasons == ("names 100% alike", "both bought APL-IP15PM within 90 days")
    assert pairs[(4, 7)].reasons[1] == "same e-mail"
    assert pairs[(4, 7)].name_similarity >= 80


def test_a_name_below_eighty_percent_is_not_the_same_person() -> None:
    left, right = Person(1, "Somchai Jaidee", "a@x.th"), Person(2, "Malee Jaidee", "a@x.th")
    assert judge_pair(left, right, {}) is None


def test_a_typo_in_one_word_still_shares_a_block() -> None:
    a, b = Person(1, "Somchai Jaidee", None), Person(2, "Somchai Jaide", None)
    c = Person(3, "Somchsi Jaidee", None)
    assert blocking_keys(a) & blocking_keys(b)
    assert blocking_keys(a) & blocking_keys(c)


def test_blocks_too_common_to_compare_are_skipped_and_reported() -> None:
    people = [Person(n, "Somchai Jaidee", None) for n in range(10)]
    found = find_candidates(people, {n: {"X"} for n in range(10)}, block_limit=5)
    assert found.candidates == [] and found.skipped_blocks
