"""Integers in English words, as a reasoning model sometimes states a result (`fifty-six`, `minus twelve`)."""

from __future__ import annotations

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(value: int) -> str:
    """English words for an integer of magnitude below a million.

    >>> number_words(56), number_words(-12), number_words(300), number_words(415)
    ('fifty-six', 'minus twelve', 'three hundred', 'four hundred fifteen')
    """
    if value < 0:
        return "minus " + number_words(-value)
    if value >= 1_000_000:
        raise ValueError(f"number_words covers magnitudes below a million, not {value}")
    if value >= 1000:
        thousands, rest = divmod(value, 1000)
        return number_words(thousands) + " thousand" + (" " + number_words(rest) if rest else "")
    if value >= 100:
        hundreds, rest = divmod(value, 100)
        return _ONES[hundreds] + " hundred" + (" " + number_words(rest) if rest else "")
    if value >= 20:
        tens, ones = divmod(value, 10)
        return _TENS[tens] + ("-" + _ONES[ones] if ones else "")
    return _ONES[value]
