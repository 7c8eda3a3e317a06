"""Answer extraction: what intermediate answer, if any, a chunk of reasoning states.

Extractors are small named objects in a registry, so that serving and training name the same ones in the
probe file and a new domain adds one class. Each returns the last answer its pattern finds, as text, so
that training can label it (math-verify or an LLM judge) and the server can compare answers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol


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
        start = text.rfind("\\boxed{")
        while start != -1:
            depth, position = 0, start + len("\\boxed")
            for position in range(start + len("\\boxed"), len(text)):
                depth += {"{": 1, "}": -1}.get(text[position], 0)
                if depth == 0:
                    return text[start + len("\\boxed{") : position].strip()
            start = text.rfind("\\boxed{", 0, start)  # unbalanced: try an earlier one
        return None


EXTRACTORS: dict[str, AnswerExtractor] = {
    extractor.name: extractor
    for extractor in (
        PatternExtractor("tinyworld", r"So the answer is (-?\d+)\."),
        BoxedExtractor(),
        # "the answer is 42." / "The final answer is: x = 3" up to the end of the sentence or line.
        PatternExtractor("answer_is", r"(?i)\bthe (?:final )?answer is:?\s*\$?([^\n$]+?)\$?\s*(?:\.(?:\s|$)|\n|$)"),
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


def get_extractor(names: tuple[str, ...] | list[str]) -> AnswerExtractor:
    unknown = [name for name in names if name not in EXTRACTORS]
    if unknown or not names:
        raise ValueError(f"unknown answer extractor(s) {unknown or names}; known: {sorted(EXTRACTORS)}")
    return FirstMatch(tuple(EXTRACTORS[name] for name in names))
