"""When two answers mean the same: the labelling of intermediate answers (probe training) and the
semantic clusters of EMPO both ask this one question.

`MathEquivalence` uses math-verify (numbers, fractions, LaTeX); `ExactEquivalence` compares normalised
text; `JudgeEquivalence` asks an LLM behind any OpenAI-compatible endpoint, which is what the probe paper
did with Gemini and what EMPO did with a verifier model for free-form answers.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Protocol


class Equivalence(Protocol):
    name: str

    def same(self, answer: str, reference: str) -> bool:
        """True when `answer` means the same as `reference`."""


class MathEquivalence:
    name = "math"

    def same(self, answer: str, reference: str) -> bool:
        return _math_same(answer.strip(), reference.strip())


@lru_cache(maxsize=65536)
def _math_same(answer: str, reference: str) -> bool:
    from math_verify import parse, verify

    if answer == reference:
        return True
    try:
        gold, guess = parse(_as_math(reference)), parse(_as_math(answer))
        return bool(gold) and bool(guess) and bool(verify(gold, guess))
    except Exception:  # math-verify raises on some malformed LaTeX; such an answer matches nothing
        return False


def _as_math(text: str) -> str:
    # math-verify parses `$...$` and `\boxed{}` reliably; bare numbers and expressions are wrapped.
    return text if "$" in text or "\\boxed" in text else f"${text}$"


class ExactEquivalence:
    name = "exact"

    def same(self, answer: str, reference: str) -> bool:
        return normalise(answer) == normalise(reference)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(".").lower())


class JudgeEquivalence:
    """An LLM judge: asks whether the answer is equivalent to the reference and reads YES/NO."""

    name = "judge"
    PROMPT = (
        "Reference answer: {reference}\nCandidate answer: {answer}\n"
        "Do the two answers mean the same thing? Reply with YES or NO only."
    )

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", timeout: float = 60.0):
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=2)
        self.model = model
        self._cache: dict[tuple[str, str], bool] = {}

    def same(self, answer: str, reference: str) -> bool:
        key = (answer, reference)
        if key not in self._cache:
            reply = self.client.chat.completions.create(
                model=self.model,
                temperature=0.0,
                max_tokens=4,
                messages=[{"role": "user", "content": self.PROMPT.format(reference=reference, answer=answer)}],
            )
            self._cache[key] = (reply.choices[0].message.content or "").strip().upper().startswith("YES")
        return self._cache[key]


JUDGE_API_KEY_ENV = "PROBEXIT_JUDGE_API_KEY"  # the judge's key is read from the environment, never a flag
EQUIVALENCES = (MathEquivalence.name, ExactEquivalence.name, JudgeEquivalence.name)


def make_equivalence(
    kind: str, judge_url: str | None = None, judge_model: str | None = None, judge_api_key: str = "EMPTY"
) -> Equivalence:
    if kind == "math":
        return MathEquivalence()
    if kind == "exact":
        return ExactEquivalence()
    if kind == "judge":
        if not judge_url or not judge_model:
            raise ValueError("the judge labeller needs --judge-url and --judge-model (an OpenAI-compatible endpoint)")
        return JudgeEquivalence(judge_url, judge_model, judge_api_key)
    raise ValueError(f"unknown equivalence {kind!r}: use {', '.join(EQUIVALENCES)}")
