"""Grading a tiny-world completion: is it well formed, is its final answer right (the gold reward).

The tiny world's answer format (`training/tinyworld/traces.py`): thinking paragraphs separated by blank lines, the
last one stating a result in one of the world's conclusion forms (the `tinyworld` extractor reads them all), then
`</think>`, then `The answer is \\boxed{N}.` with the same N as that result. A completion is *well formed* when it
has exactly that shape; its *gold reward* is 1 when it is well formed and its final answer
(`probes.answers.final_answer`, the box in a well-formed one) equals the gold answer, else 0. This is stricter than
EMPO's validity (the marker once and a boxed answer after it): an answer without thinking, or a box that
contradicts the thinking, earns nothing even when the box happens to be right. Adv-RM uses it as the true reward
its proxies are judged against; EMPO and others may use it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from probexit.probes.answers import EXTRACTORS, TinyWorldExtractor, final_answer
from probexit.probes.equivalence import Equivalence, MathEquivalence
from probexit.probes.markers import THINK_END, THINK_START, split_thinking
from probexit.training.grpo import completion_text

STATED = EXTRACTORS["tinyworld"]  # the world's own conclusion forms (a result in digits or in words)
ENDING = re.compile(r"^\s*The answer is \\boxed\{(-?\d+)\}\.\s*$")  # all that may follow the thinking


@dataclass(frozen=True)
class Graded:
    """What grading found in one completion."""

    answer: str | None  # the final answer (after the end of thinking), None when there is none
    problems: tuple[str, ...]  # format problems, empty when well formed
    right: bool  # the final answer equals the gold answer

    @property
    def well_formed(self) -> bool:
        return not self.problems

    @property
    def gold(self) -> float:
        return float(self.right and self.well_formed)


def last_conclusion(paragraph: str) -> re.Match | None:
    """Where `paragraph` last states a result in one of the world's conclusion forms (None: it states none).

    >>> last_conclusion("2 + 2 is 4. So I get four. Hmm.").group()
    'So I get four.'
    """
    matches = list(TinyWorldExtractor.PATTERN.finditer(paragraph))
    return matches[-1] if matches else None


def paragraphs(thinking: str) -> list[str]:
    """The thinking's paragraphs (blank-line separated, stripped, empty ones dropped)."""
    return [p.strip() for p in thinking.split("\n\n") if p.strip()]


def format_problems(text: str) -> tuple[str, ...]:
    """Why a completion is not in the tiny world's format (nothing: it is).

    >>> ok = "Quick. 2 + 2 is 4. So the answer is 4.\\n\\n</think>\\n\\nThe answer is \\\\boxed{4}."
    >>> format_problems(ok)
    ()
    >>> format_problems("</think>\\n\\nThe answer is \\\\boxed{4}.")
    ('no thinking',)
    >>> format_problems(ok.replace("boxed{4}", "boxed{5}"))
    ('boxed answer differs from the thinking',)
    >>> format_problems("So the answer is 4.")
    ('no end of thinking',)
    """
    if text.count(THINK_END) != 1:
        return ("no end of thinking",) if THINK_END not in text else ("end of thinking repeated",)
    thinking, tail = split_thinking(text)
    problems = []
    if 0 <= text.find(THINK_START) < text.find(THINK_END):  # the prompt opened it: a start marker opens it again
        problems.append("thinking opened again")
    chunks = paragraphs(thinking)
    stated = STATED.extract(chunks[-1]) if chunks else None
    if not chunks:
        problems.append("no thinking")
    elif stated is None:
        problems.append("the thinking ends on no result")
    ending = ENDING.match(tail)
    if ending is None:
        boxed = final_answer(tail, extractors=("boxed",))  # the world writes its final answer boxed
        problems.append("no final answer sentence" if boxed is None else "text around the final answer")
    elif stated is not None and stated != ending.group(1):
        problems.append("boxed answer differs from the thinking")
    return tuple(problems)


def grade(text: str, gold: str | None, equivalence: Equivalence | None = None) -> Graded:
    """Grade one completion against a gold answer (None: `right` is False)."""
    answer = final_answer(split_thinking(text)[1])
    right = answer is not None and gold is not None and (equivalence or MathEquivalence()).same(answer, str(gold))
    return Graded(answer, format_problems(text), right)


def stated_answers(text: str) -> list[str]:
    """The intermediate answers the thinking states, in order (the tiny-world extractor's pattern)."""
    thinking = split_thinking(text)[0]
    return [a for a in (STATED.extract(chunk) for chunk in paragraphs(thinking)) if a is not None]


def gold_reward(
    completions: list, answer: list[str], *, equivalence: Equivalence | None = None, **kwargs
) -> list[float]:
    """The gold reward in TRL's reward signature: 1 for a well-formed completion with the right answer.

    >>> done = lambda n: f"I add. So the answer is {n}.\\n\\n</think>\\n\\nThe answer is \\\\boxed{{{n}}}."
    >>> gold_reward([done(4), done(5), "</think>\\n\\nThe answer is \\\\boxed{4}."], answer=["4", "4", "4"])
    [1.0, 0.0, 0.0]
    """
    equivalence = equivalence or MathEquivalence()
    return [grade(completion_text(c), gold, equivalence).gold for c, gold in zip(completions, answer)]
