"""Integers in English words: what the tiny world's traces write, its reader reads back."""

import re

import pytest

from probexit.probes.words import WORDED, number_words, words_value


@pytest.mark.parametrize("value", [*range(-120, 121), 300, 415, 1000, 1001, 56_789, -999_999])
def test_words_read_back_as_the_number_they_spell(value):
    assert words_value(number_words(value)) == value
    assert re.fullmatch(WORDED, number_words(value))


def test_other_text_is_not_a_number():
    assert words_value("fifty apples") is None and words_value("") is None
    with pytest.raises(ValueError, match="below a million"):
        number_words(1_000_000)
