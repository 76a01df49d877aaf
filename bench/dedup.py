"""Duplicate detection (#9, C3): time, precision and recall over N contacts with ~5% planted
duplicates, side by side with splink (DuckDB backend) on the same data.

    python -m bench.dedup [--contacts 1000000] [--skip-splink]

The data is generated from a seed. People have a first name, a surname (syllables, so that
surnames are as varied as Thai ones), often an e-mail, and sometimes SKUs bought in the last
90 days. A planted duplicate is the same person under another number. Its name is kept, or
changed in case and spacing, given one typo, or written surname first. Its evidence is the
same e-mail or one of the same SKUs (C3 asks for evidence besides the name). Contacts that are
not duplicates share first names and SKUs by chance, as real ones do.

Both sides get the same records: id, full name (first and surname for splink), e-mail, SKUs.
Precision and recall are measured on the planted pairs.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from bench.common import machine
from tidings.contacts.duplicates import Person, find_candidates

FIRST = [
    "somchai",
    "somsak",
    "somporn",
    "malee",
    "suda",
    "nok",
    "ploy",
    "ying",
    "arthit",
    "anan",
    "kittisak",
    "pim",
    "fah",
    "mint",
    "niran",
    "prasert",
    "wichai",
    "supaporn",
    "siriporn",
    "kanya",
    "wei",
    "ming",
    "jun",
    "li",
    "hua",
    "mei",
    "lan",
    "hao",
    "jie",
    "yan",
    "john",
    "mary",
    "david",
    "sarah",
    "michael",
    "emma",
    "james",
    "olivia",
    "daniel",
    "sophia",
    "thanawat",
    "narong",
    "chai",
    "pornthip",
    "rattana",
    "chanida",
    "apinya",
    "boonmee",
    "chaiwat",
    "decha",
    "ekkachai",
    "jirawat",
    "kamon",
    "lamai",
    "manee",
    "nattapong",
    "orathai",
    "pakorn",
    "rungnapa",
    "sakda",
    "tanong",
    "udom",
]
SYLLABLES = [
    "sri",
    "suk",
    "wong",
    "chai",
    "porn",
    "rat",
    "ta",
    "na",
    "kul",
    "sak",
    "dee",
    "jai",
    "boon",
    "ma",
    "la",
    "ka",
    "pa",
    "ya",
    "ra",
    "sa",
    "tha",
    "pha",
    "wa",
    "cha",
    "ngam",
    "sin",
    "thong",
    "kaew",
    "mun",
    "lek",
    "yai",
    "noi",
    "khun",
    "phon",
    "tree",
    "rak",
]


@dataclass(frozen=True)
class Record:
    id: int
    first: str
    surname: str
    email: str | None
    skus: tuple[str, ...]


def _surname(rng: random.Random) -> str:
    # Thai surnames are long and nearly one per family: three or four syllables here.
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 4)))


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word + rng.choice("aeiou")
    at = rng.randrange(1, len(word) - 1)
    if rng.random() < 0.5:
        return word[:at] + word[at + 1 :]  # a letter dropped
    return word[:at] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[at + 1 :]


def generate(count: int, share: float, seed: int = 7) -> tuple[list[Record], set[tuple[int, int]]]:
    rng = random.Random(seed)
    originals = int(count * (1 - share))
    records: list[Record] = []
    for n in range(originals):
        first, surname = rng.choice(FIRST), _surname(rng)
        email = f"{first}.{surname}{n % 97}@mail{n % 13}.example" if rng.random() < 0.6 else None
        bought = (
            tuple(f"SKU-{rng.randrange(2000):04d}" for _ in range(rng.randint(1, 2)))
            if rng.random() < 0.4
            else ()
        )
        records.append(Record(n, first, surname, email, bought))
    planted: set[tuple[int, int]] = set()
    for n in range(originals, count):
        original = records[rng.randrange(originals)]
        first, surname = original.first, original.surname
        change = rng.random()
        if change < 0.2:
            first, surname = first.capitalize(), surname.upper()
        elif change < 0.4:
            if rng.random() < 0.5:
                first = _typo(rng, first)
            else:
                surname = _typo(rng, surname)
        elif change < 0.6:
            first, surname = surname, first  # written surname first
        if original.email and rng.random() < 0.5:
            email, bought = original.email, ()
        elif original.skus:
            email, bought = None, (rng.choice(original.skus),)
        else:
            shared = f"SKU-{rng.randrange(2000):04d}"
            records[original.id] = Record(
                original.id,
                original.first,
                original.surname,
                original.email,
                (*records[original.id].skus, shared),
            )
            email, bought = None, (shared,)
        records.append(Record(n, first, surname, email, bought))
        planted.add((original.id, n))
    # One person may have been planted twice: the two copies are a pair too.
    copies: dict[int, list[int]] = {}
    for original, copy in planted:
        copies.setdefault(original, []).append(copy)
    for group in copies.values():
        planted.update((min(a, b), max(a, b)) for i, a in enumerate(group) for b in group[i + 1 :])
    return records, planted


def ours(records: list[Record]) -> tuple[set[tuple[int, int]], float]:
    started = time.perf_counter()
    people = [Person(r.id, f"{r.first} {r.surname}", r.email) for r in records]
    purchases = {r.id: set(r.skus) for r in records if r.skus}
    found = find_candidates(people, purchases)
    pairs = {(c.first, c.second) for c in found.candidates}
    return pairs, time.perf_counter() - started


def splink(records: list[Record], threads: int) -> tuple[set[tuple[int, int]], float]:
    import duckdb
    import orjson
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as rows:
        for r in records:
            rows.write(
                orjson.dumps(
                    {
                        "unique_id": r.id,
                        "first_name": r.first.casefold(),
                        "surname": r.surname.casefold(),
                        "email": r.email,
                        "skus": list(r.skus) or None,
                    }
                )
                + b"\n"
            )
    started = time.perf_counter()
    connection = duckdb.connect()
    connection.execute(f"SET threads TO {threads}")
    connection.execute(
        "CREATE TABLE people AS SELECT * FROM read_json(?, columns = {unique_id: 'BIGINT', "
        "first_name: 'VARCHAR', surname: 'VARCHAR', email: 'VARCHAR', skus: 'VARCHAR[]'})",
        [rows.name],
    )
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.ForenameSurnameComparison("first_name", "surname"),  # swapped names too
            cl.EmailComparison("email"),
            cl.ArrayIntersectAtSizes("skus", [1]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("email"),
            block_on("first_name", "substr(surname, 1, 4)"),
            block_on("first_name", "substr(surname, -4, 4)"),
            block_on("surname", "substr(first_name, 1, 1)"),
            block_on("surname", "substr(first_name, -1, 1)"),
            block_on("first_name", "surname", "skus"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    api = DuckDBAPI(connection=connection)
    linker = Linker(api.register("people"), settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("email"), block_on("first_name", "surname")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("email"))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname")
    )
    predictions = linker.inference.predict(threshold_match_probability=0.9).as_record_list()
    pairs = {
        (
            min(int(p["unique_id_l"]), int(p["unique_id_r"])),
            max(int(p["unique_id_l"]), int(p["unique_id_r"])),
        )
        for p in predictions
    }
    os.unlink(rows.name)
    return pairs, time.perf_counter() - started


def quality(found: set[tuple[int, int]], planted: set[tuple[int, int]]) -> tuple[float, float]:
    right = len(found & planted)
    return (right / len(found) if found else 0.0), right / len(planted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-splink", action="store_true")
    args = parser.parse_args()
    console = Console()
    records, planted = generate(args.contacts, args.share)
    rows = []
    found, seconds = ours(records)
    rows.append(
        ("Tidings (blocking + rapidfuzz + evidence)", seconds, *quality(found, planted), len(found))
    )
    if not args.skip_splink:
        found, seconds = splink(records, args.threads)
        rows.append(
            ("splink 5 (DuckDB, trained by EM)", seconds, *quality(found, planted), len(found))
        )
    table = Table(title=f"Duplicates: {args.contacts:,} contacts, {len(planted):,} planted pairs")
    for name in ("way", "seconds", "precision", "recall", "pairs found"):
        table.add_column(name, justify="left" if name == "way" else "right")
    for label, took, precision, recall, count in rows:
        table.add_row(label, f"{took:.1f}", f"{precision:.2%}", f"{recall:.2%}", f"{count:,}")
    console.print(table)
    if len(rows) == 2:
        console.print(f"× {rows[1][1] / rows[0][1]:.1f} faster than splink · {machine()}")
    else:
        console.print(machine())


if __name__ == "__main__":
    main()
