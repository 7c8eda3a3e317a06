"""Reasoning traces of the tiny world: the supervised data the policy learns to think like.

A trace is a thinking section of paragraphs, each ending `So the answer is N.`, then the final answer.
Two ways of computing make the world's errors genuine and checkable rather than coin flips:

- careful ("step by step"): left to right, always right, negatives included;
- quick ("in my head"): the classic slips of mental arithmetic, made every time their condition holds:
  a subtraction that should go below zero drops the sign (3 - 14 is 11), a subtraction that needs a
  borrow forgets it (23 - 7 is 26), an addition that needs a carry forgets it (17 + 5 is 12).

So whether an intermediate answer is right depends on what the model wrote (the method, and whether a
slip condition arose), which the model can see and learn to notice, not on a sampled token it cannot
second-guess (docs/tinyworld.md). What follows an answer depends on its correctness: after a
wrong answer the trace re-checks far more often (sometimes saying that something looks off), after a
right one it still often re-checks redundantly, which is the overthinking early exit removes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from probexit.probes.markers import THINK_END
from probexit.training.tinyworld.problems import Problem

STEP, QUICK = "step", "quick"
ANSWER_PHRASE = "So the answer is {}."
PARAGRAPH_BREAK = "\n\n"

FIRST_OPENERS = {
    STEP: ("Let me work it out step by step.", "Let me go one step at a time.", "I'll compute it carefully."),
    QUICK: ("Quick mental math.", "Let me do this in my head.", "This one is quick."),
}
CHECK_OPENERS = (
    "Wait, let me double-check",
    "Let me double-check",
    "Hmm, let me verify that",
    "Let me check once more",
    "Alternatively, let me recompute it",
)
CHECK_METHOD_SUFFIX = {STEP: " step by step.", QUICK: " quickly."}
REDO_OPENERS = (
    "Wait, that doesn't look right. Let me redo it step by step.",
    "Hmm, something is off. Let me go step by step.",
)


@dataclass(frozen=True)
class TraceStyle:
    """The knobs of the trace distribution; the defaults are the embedded world's."""

    first_quick: float = 0.6  # P(the first attempt is quick)
    check_quick: float = 0.5  # P(a neutral re-check is quick)
    continue_after_wrong: float = 0.95  # P(another paragraph follows a wrong answer)
    redo_after_wrong: float = 0.25  # P(that paragraph says the answer looks off and goes step by step)
    # P(another paragraph follows a right answer), by how many times in a row it has now been stated:
    # a trained policy re-checks a little less than its data, so the first check is made likely.
    continue_after_right: tuple[float, ...] = (0.72, 0.2, 0.05)
    max_paragraphs: int = 6

    def __post_init__(self):
        probabilities = (self.first_quick, self.check_quick, self.continue_after_wrong, self.redo_after_wrong)
        if not all(0.0 <= p <= 1.0 for p in probabilities + self.continue_after_right):
            raise ValueError("TraceStyle probabilities must lie in [0, 1]")
        if self.max_paragraphs < 1 or not self.continue_after_right:
            raise ValueError("TraceStyle needs max_paragraphs >= 1 and at least one continue_after_right value")


def quick_step(value: int, op: str, number: int) -> int:
    """One step of quick mental arithmetic, with its slips (the running value is never negative here)."""
    if op == "+":
        carry_needed = value >= 0 and value % 10 + number % 10 >= 10
        return value + number - 10 if carry_needed else value + number
    if value >= 0 and number > value:
        return number - value  # sign dropped
    if value >= number and value % 10 < number % 10:
        return value - number + 10  # borrow forgotten
    return value - number


def careful_step(value: int, op: str, number: int) -> int:
    return value + number if op == "+" else value - number


def run_method(problem: Problem, method: str) -> list[int]:
    """The running values a method writes, one per operation."""
    step = quick_step if method == QUICK else careful_step
    values, value = [], problem.numbers[0]
    for op, number in zip(problem.ops, problem.numbers[1:]):
        value = step(value, op, number)
        values.append(value)
    return values


def render_steps(problem: Problem, method: str, rng: random.Random) -> str:
    values = run_method(problem, method)
    if method == QUICK:
        verb = rng.choice(("is", "makes"))
        first_op, first_number = problem.ops[0], problem.numbers[1]
        parts = [f"{problem.numbers[0]} {first_op} {first_number} {verb} {values[0]}"]
        for op, number, value in zip(problem.ops[1:], problem.numbers[2:], values[1:]):
            parts.append(f"{'plus' if op == '+' else 'minus'} {number} {verb} {value}")
        return ", ".join(parts) + "."
    previous = [problem.numbers[0]] + values[:-1]
    sentences = [f"{a} {op} {n} = {v}." for a, op, n, v in zip(previous, problem.ops, problem.numbers[1:], values)]
    if rng.random() < 0.5:
        connectives = ["First,"] + ["Then"] * (len(sentences) - 1)
        sentences = [f"{c} {s}" for c, s in zip(connectives, sentences)]
    return " ".join(sentences)


@dataclass
class Paragraph:
    method: str
    answer: int
    correct: bool
    text: str


@dataclass
class Trace:
    problem: Problem
    paragraphs: list[Paragraph] = field(default_factory=list)

    @property
    def final_answer(self) -> int:
        return self.paragraphs[-1].answer

    @property
    def thinking(self) -> str:
        return PARAGRAPH_BREAK.join(p.text for p in self.paragraphs) + PARAGRAPH_BREAK

    @property
    def completion(self) -> str:
        """What the model writes after the prompt, which already ends with `<think>` and a newline."""
        return f"{self.thinking}{THINK_END}\n\nThe answer is \\boxed{{{self.final_answer}}}."


def _paragraph(problem: Problem, method: str, opener: str, rng: random.Random) -> Paragraph:
    answer = run_method(problem, method)[-1]
    text = f"{opener} {render_steps(problem, method, rng)} {ANSWER_PHRASE.format(answer)}"
    return Paragraph(method, answer, answer == problem.answer, text)


def _right_streak(paragraphs: list[Paragraph]) -> int:
    """How many paragraphs in a row, ending with the last, stated the same right answer."""
    streak = 0
    for paragraph in reversed(paragraphs):
        if not paragraph.correct or paragraph.answer != paragraphs[-1].answer:
            break
        streak += 1
    return streak


def _next_paragraph(problem: Problem, trace: Trace, style: TraceStyle, rng: random.Random) -> Paragraph | None:
    last = trace.paragraphs[-1]
    if len(trace.paragraphs) >= style.max_paragraphs:
        return None
    if last.correct:
        streak = _right_streak(trace.paragraphs)
        p_continue = style.continue_after_right[min(streak, len(style.continue_after_right)) - 1]
    else:
        p_continue = style.continue_after_wrong
    if rng.random() >= p_continue:
        return None
    if not last.correct and rng.random() < style.redo_after_wrong:
        return _paragraph(problem, STEP, rng.choice(REDO_OPENERS), rng)
    method = QUICK if rng.random() < style.check_quick else STEP
    return _paragraph(problem, method, rng.choice(CHECK_OPENERS) + CHECK_METHOD_SUFFIX[method], rng)


def sample_trace(problem: Problem, style: TraceStyle, rng: random.Random) -> Trace:
    first_method = QUICK if rng.random() < style.first_quick else STEP
    trace = Trace(problem, [_paragraph(problem, first_method, rng.choice(FIRST_OPENERS[first_method]), rng)])
    while (paragraph := _next_paragraph(problem, trace, style, rng)) is not None:
        trace.paragraphs.append(paragraph)
    return trace
