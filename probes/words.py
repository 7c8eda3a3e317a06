"""Integers in English words, as a reasoning model sometimes states a result (`fifty-six`, `minus twelve`): writing
them (the tiny world's traces) and reading them back (its answer reader)."""

from __future__ import annotations

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_VALUES = {word: value for value, word in enumerate(_ONES)} | {word: 10 * i for i, word in enumerate(_TENS) if i > 1}
_NUMBER_WORD = "|".join(sorted([*_VALUES, "hundred", "thousand"], key=len, reverse=True))
WORDED = rf"(?:minus )?(?:{_NUMBER_WORD})(?:[ -](?:{_NUMBER_WORD}))*"  # a pattern for one integer in words


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


def words_value(text: str) -> int | None:
    """An integer written in English words (`minus fifty-six`, `four hundred fifteen`), or None.

    >>> words_value("fifty-six"), words_value("minus twelve"), words_value("four hundred fifteen"), words_value("x")
    (56, -12, 415, None)
    """
    words = text.lower().replace("-", " ").split()
    sign = -1 if words[:1] == ["minus"] else 1
    total = group = 0
    for word in words[1:] if sign < 0 else words:
        if word in _VALUES:
            group += _VALUES[word]
        elif word == "hundred":
            group *= 100
        elif word == "thousand":
            total, group = total + group * 1000, 0
        else:
            return None
    return sign * (total + group) if words else None
