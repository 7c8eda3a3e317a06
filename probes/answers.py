"""Answer extraction: what intermediate answer, if any, a chunk of reasoning states.

Extractors are small named objects in a registry, so that serving and training name the same ones in the
probe file and a new domain adds one class. Each returns the last answer its pattern finds, as text, so
that training can label it (math-verify or an LLM judge) and the server can compare answers. The `reasoning`
reader of real reasoning models' prose lives in `probes/prose.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from probexit.probes.prose import ReasoningExtractor, last_boxed
from probexit.probes.words import WORDED, words_value


class AnswerExtractor(Protocol):
    name: str

    def extract(self, text: str) -> str | None:
        """The last answer `text` states, or None."""


@dataclass(frozen=True)
class PatternExtractor:
    """The last match of a regular expression's first group."""

    name: str
    pattern: str

    def extract(self, text: str) -> str | None:
        matches = re.findall(self.pattern, text)
        return matches[-1].strip() if matches else None


class BoxedExtractor:
    """The content of the last `\\boxed{...}`, with nested braces balanced."""

    name = "boxed"

    def extract(self, text: str) -> str | None:
        return last_boxed(text)


# -- the tiny world's own conclusions ----------------------------------------------------------------------
class TinyWorldExtractor:
    """The embedded tiny world's conclusions, in every form its traces state them: plainly (`So the answer is 56.`,
    `That gives 56.`) or obliquely (in words, `So I get fifty-six.`; inside another sentence, `56 is where the
    running total lands.`). A general reader is not meant to read the oblique ones; this one knows the world."""

    name = "tinyworld"
    _LEADS = (
        "So the answer is|So the result is|That gives|So we get|So it comes to|Therefore the total is|"
        "So the answer should be|So I get|That makes it|I end up with"
    )
    _VALUE = rf"(-?\d+|{WORDED})"
    _PLAIN = rf"(?:{_LEADS}) {_VALUE}(?: in the end| after the last operation, which is what the question wants)?"
    _OBLIQUE_WORDS = "is where the running total lands"
    PATTERN = re.compile(rf"(?:{_PLAIN}|{_VALUE} {_OBLIQUE_WORDS})\.")
    # The oblique form opens with a number, so its regex is tried at every position of the text (about 20 us a
    # paragraph): only a paragraph that holds its words can state it, and the others are read by the plain forms
    # alone, which find the same matches.
    PLAIN_PATTERN = re.compile(rf"{_PLAIN}\.")

    def extract(self, text: str) -> str | None:
        if self._OBLIQUE_WORDS in text:
            matches = self.PATTERN.findall(text)
            value = next(group for group in matches[-1] if group) if matches else None
        else:
            matches = self.PLAIN_PATTERN.findall(text)
            value = matches[-1] if matches else None
        if value is None:
            return None
        return value if value.lstrip("-").isdigit() else str(words_value(value))


EXTRACTORS: dict[str, AnswerExtractor] = {
    extractor.name: extractor
    for extractor in (
        TinyWorldExtractor(),
        BoxedExtractor(),
        # "the answer is 42." / "The final answer is: x = 3" up to the end of the sentence or line.
        PatternExtractor("answer_is", r"(?i)\bthe (?:final )?answer is:?\s*\$?([^\n$]+?)\$?\s*(?:\.(?:\s|$)|\n|$)"),
        ReasoningExtractor(),
    )
}


@dataclass(frozen=True)
class FirstMatch:
    """Tries extractors in order; the first that finds an answer wins."""

    extractors: tuple[AnswerExtractor, ...]

    @property
    def name(self) -> str:
        return "+".join(e.name for e in self.extractors)

    def extract(self, text: str) -> str | None:
        for extractor in self.extractors:
            answer = extractor.extract(text)
            if answer:
                return answer
        return None

    @property
    def reads_options(self) -> bool:
        """Whether any of these extractors reads a multiple-choice option by its content (see `for_question`)."""
        return any(hasattr(e, "for_question") for e in self.extractors)

    def for_question(self, question: str) -> FirstMatch:
        """These extractors for one question: those that read a multiple-choice option by its content learn the
        options the question lists."""
        return FirstMatch(tuple(e.for_question(question) if hasattr(e, "for_question") else e for e in self.extractors))


def get_extractor(names: tuple[str, ...] | list[str]) -> AnswerExtractor:
    unknown = [name for name in names if name not in EXTRACTORS]
    if unknown or not names:
        raise ValueError(f"unknown answer extractor(s) {unknown or names}; known: {sorted(EXTRACTORS)}")
    return FirstMatch(tuple(EXTRACTORS[name] for name in names))


FINAL_ANSWER = ("boxed", "answer_is", "reasoning")


def final_answer(answer: str | None, extractors: tuple[str, ...] = FINAL_ANSWER) -> str | None:
    """The final answer a client reads in what a completion writes after its thinking (`answer`, the second
    part of `markers.split_thinking`; None, a completion cut off inside its thinking, states none): the last
    `\\boxed{}`, else "the answer is ...", else the conclusion its last paragraph states.

    One rule for every reader, so that the harm the probe job certifies is the harm shadow mode and
    `bench savings` measure. A reader that demands a stricter format names fewer `extractors` (EMPO rewards
    only a boxed answer).

    >>> final_answer("\\n\\nThe answer is \\\\boxed{12}."), final_answer("So the answer is 12."), final_answer(None)
    ('12', '12', None)
    >>> final_answer("The answer is 12.", extractors=("boxed",)) is None
    True
    """
    return get_extractor(extractors).extract(answer) if answer is not None else None
