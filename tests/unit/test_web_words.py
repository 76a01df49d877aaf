"""The web app speaks three languages: every word exists in each, and placeholders match."""

from __future__ import annotations

import re

import pytest

from tidings.web.i18n import WORDS


@pytest.mark.parametrize("language", ["th", "zh-Hant"])
def test_every_word_is_translated_with_the_same_placeholders(language: str) -> None:
    english, other = WORDS["en"], WORDS[language]
    assert set(other) == set(english)
    for key, text in english.items():
        wanted = set(re.findall(r"\{\w+\}", text))
        assert set(re.findall(r"\{\w+\}", other[key])) == wanted, key
        assert other[key].strip(), key
