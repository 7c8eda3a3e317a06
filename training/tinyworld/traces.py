"""Reasoning traces of the tiny world: the supervised data the policy learns to think like.

A trace reads like a real reasoning model's thinking: a first paragraph that restates the task and states no
result, attempts that compute partial results and state them in varied words, conclusions in many forms (some
only in words, some inside a sentence about something else, which a text reader misses), and re-checks opened by
`Wait,`, `Hmm,`, `Let me double-check`, `Alternatively,`. After the end-of-thinking marker the answer is
`The answer is \\boxed{N}.`

Two ways of computing make the world's errors genuine and checkable rather than coin flips:

- careful: left to right, a two-digit operand split into tens and units (`45 + 17: 45 + 10 = 55, then 55 + 7 =
  62`), negatives handled by magnitudes (`8 - 30 = -(30 - 8) = -22`); always right;
- quick: one-shot mental arithmetic with the classic slips, made every time their condition holds: a
  subtraction that should go below zero drops the sign (3 - 14 is 11), one that needs a borrow forgets it
  (23 - 7 is 26), an addition that needs a carry forgets it (17 + 5 is 12).

So whether an intermediate answer is right depends on what the model wrote (the method, and whether a slip
condition arose), which it can see and learn to notice. What follows an answer depends on its correctness: after a
wrong answer the trace re-checks far more often (sometimes naming the slip), after a right one it still often
re-checks redundantly, which is the overthinking early exit removes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from probexit.probes.markers import THINK_END
from probexit.probes.words import number_words
from probexit.training.tinyworld.problems import Problem

STEP, QUICK = "step", "quick"
PARAGRAPH_BREAK = "\n\n"
FINAL_ANSWER = "The answer is \\boxed{{{}}}."
# The longest completion the card and the probe's traces sample: the context (1024) less the longest prompt.
TRACE_MAX_TOKENS = 900

OPENERS = (
    "Okay, so I need to work out {e}. The operations go from left to right.",
    "Alright, the question asks for {e}. Let me take the operations in order.",
    "Let me see. We want {e}, evaluated left to right.",
    "Okay, let's figure out {e}.",
    "So the task is {e}. I'll go through it one operation at a time.",
    "Hmm, {e}. Let me think about this.",
)
FIRST_LEADS = {
    STEP: ("Let me work it out step by step.", "I'll go carefully.", "Step by step:", "Let me be careful here."),
    QUICK: ("Quick mental math:", "In my head:", "This looks quick.", "Doing it quickly:"),
}
CHECK_LEADS = {
    STEP: (
        "Wait, let me double-check that step by step.",
        "Let me double-check, carefully this time.",
        "Hmm, let me verify that step by step.",
        "Alternatively, I can recompute it carefully.",
        "Let me go through it once more, step by step.",
    ),
    QUICK: (
        "Wait, let me double-check that quickly.",
        "Let me double-check in my head.",
        "Hmm, let me verify that quickly.",
        "Alternatively, a quick recount:",
        "Let me run through it again quickly.",
    ),
}
REDO_LEADS = (
    "Wait, that doesn't look right. Let me redo it step by step.",
    "Hmm, something is off. Let me go step by step.",
    "Hold on, I think I slipped somewhere. Let me redo it carefully.",
)
# How a paragraph states its result N: plainly, or obliquely (only in words, or inside a sentence about something
# else), as real reasoning prose often does and a text reader misses. Which of the two a trace uses follows from how
# the question was asked (`TraceStyle.oblique_phrasings`), so that a model sampled at a low temperature keeps
# writing both: a style drawn at random with odds of one in five is sharpened away by the sampling temperature.
PLAIN_CONCLUSIONS = (
    "So the answer is {n}.",
    "So the result is {n}.",
    "That gives {n}.",
    "So we get {n}.",
    "So it comes to {n}.",
    "Therefore the total is {n}.",
    "So the answer should be {n}.",
)
OBLIQUE_CONCLUSIONS = (
    "So I get {w}.",
    "That makes it {w} in the end.",
    "I end up with {n} after the last operation, which is what the question wants.",
    "{n} is where the running total lands.",
)


@dataclass(frozen=True)
class TraceStyle:
    """The knobs of the trace distribution; the defaults are the embedded world's."""

    first_quick: float = 0.5  # P(the first attempt is quick)
    check_quick: float = 0.3  # P(a neutral re-check is quick)
    # A quick result is always checked by a careful attempt: whether a quick sum slipped is not visible in its text,
    # so a model taught to stop after some quick answers stops after wrong ones as well.
    quick_results_checked: bool = True
    continue_after_wrong: float = 0.99  # P(another attempt follows a wrong answer)
    redo_after_wrong: float = 0.6  # P(that attempt says the answer looks off and goes step by step)
    # P(another paragraph follows a right answer), by how many times in a row it has now been stated:
    # a trained policy re-checks a little less than its data, so the first check is made likely.
    continue_after_right: tuple[float, ...] = (0.72, 0.2, 0.05)
    split_attempt: float = 0.25  # P(a careful attempt of 3+ operations breaks into two paragraphs)
    # The phrasings (indices into PHRASINGS) a question is answered casually in: every result of its trace stated
    # obliquely. "How much is" and "Work out": 2 of 7 phrasings.
    oblique_phrasings: tuple[int, ...] = (4, 6)
    max_attempts: int = 5  # attempts at the whole problem (the opening and partial paragraphs are not counted)

    def __post_init__(self):
        probabilities = (
            self.first_quick,
            self.check_quick,
            self.continue_after_wrong,
            self.redo_after_wrong,
            self.split_attempt,
        )
        if not all(0.0 <= p <= 1.0 for p in probabilities + self.continue_after_right):
            raise ValueError("TraceStyle probabilities must lie in [0, 1]")
        if self.max_attempts < 1 or not self.continue_after_right:
            raise ValueError("TraceStyle needs max_attempts >= 1 and at least one continue_after_right value")


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


def _magnitude_step(a: int, op: str, b: int) -> str:
    """`a op b` for a, b >= 0 (and a >= b when subtracting), a two-digit b split into tens and units."""
    result = a + b if op == "+" else a - b
    tens, units = b - b % 10, b % 10
    if tens == 0 or units == 0:
        return f"{a} {op} {b} = {result}"
    middle = a + tens if op == "+" else a - tens
    return f"{a} {op} {tens} = {middle}, then {middle} {op} {units} = {result}"


def explain_careful(value: int, op: str, number: int) -> str:
    """The careful method's words for one operation, ending on its result (always right)."""
    result = careful_step(value, op, number)
    if value >= 0 and (op == "+" or number <= value):
        return _magnitude_step(value, op, number) + "."
    if value >= 0:  # goes below zero
        return f"{value} - {number} goes below zero: {_magnitude_step(number, '-', value)}, so it is {result}."
    if op == "-":
        return f"{value} - {number} = -({-value} + {number}): {_magnitude_step(-value, '+', number)}, so {result}."
    if number >= -value:
        return f"{value} + {number} = {number} - {-value}: {_magnitude_step(number, '-', -value)}."
    return f"{value} + {number} = -({-value} - {number}): {_magnitude_step(-value, '-', number)}, so {result}."


CONNECTIVES = ("First,", "Then", "Next,", "After that,", "Then")


def render_careful(problem: Problem, start: int, stop: int, rng: random.Random) -> str:
    """Careful sentences for operations start..stop-1."""
    sentences, value = [], problem.numbers[0]
    for index, (op, number) in enumerate(zip(problem.ops, problem.numbers[1:])):
        if index >= start:
            connective = "Finally," if index == len(problem.ops) - 1 and index > 0 else CONNECTIVES[min(index, 4)]
            sentence = explain_careful(value, op, number)
            sentences.append(f"{connective} {sentence}" if rng.random() < 0.7 else sentence[0].upper() + sentence[1:])
        value = careful_step(value, op, number)
        if index + 1 >= stop:
            break
    return " ".join(sentences)


def render_quick(problem: Problem, rng: random.Random) -> str:
    values = run_method(problem, QUICK)
    verb = rng.choice(("is", "makes", "gives"))
    parts = [f"{problem.numbers[0]} {problem.ops[0]} {problem.numbers[1]} {verb} {values[0]}"]
    for op, number, value in zip(problem.ops[1:], problem.numbers[2:], values[1:]):
        parts.append(f"{'plus' if op == '+' else 'minus'} {number} {verb} {value}")
    return ", ".join(parts) + "."


def conclusion(answer: int, oblique: bool, rng: random.Random) -> str:
    forms = OBLIQUE_CONCLUSIONS if oblique else PLAIN_CONCLUSIONS
    return rng.choice(forms).format(n=answer, w=number_words(answer))


@dataclass
class Paragraph:
    method: str | None  # None: a paragraph that states no result
    answer: int | None
    correct: bool
    text: str


@dataclass
class Trace:
    problem: Problem
    paragraphs: list[Paragraph] = field(default_factory=list)

    @property
    def attempts(self) -> list[Paragraph]:
        """The paragraphs that state a result for the whole problem."""
        return [p for p in self.paragraphs if p.answer is not None]

    @property
    def last_result(self) -> int:
        """The result the last attempt states: what the trace boxes after its thinking."""
        return self.attempts[-1].answer

    @property
    def thinking(self) -> str:
        return PARAGRAPH_BREAK.join(p.text for p in self.paragraphs) + PARAGRAPH_BREAK

    @property
    def completion(self) -> str:
        """What the model writes after the prompt, which already ends with `<think>` and a newline."""
        return f"{self.thinking}{THINK_END}\n\n{FINAL_ANSWER.format(self.last_result)}"


def _attempt(problem: Problem, method: str, lead: str, style: TraceStyle, rng: random.Random) -> list[Paragraph]:
    """One attempt: its paragraphs (a careful attempt of 3+ operations may break into two), the last stating the
    result."""
    answer = run_method(problem, method)[-1]
    done = Paragraph(method, answer, answer == problem.answer, "")
    n_ops = len(problem.ops)
    stated = conclusion(answer, problem.phrasing in style.oblique_phrasings, rng)
    if method == QUICK:
        done.text = f"{lead} {render_quick(problem, rng)} {stated}"
        return [done]
    if n_ops >= 3 and rng.random() < style.split_attempt:
        cut = rng.randint(1, n_ops - 1)
        partial = Paragraph(None, None, False, f"{lead} {render_careful(problem, 0, cut, rng)}")
        done.text = f"{render_careful(problem, cut, n_ops, rng)} {stated}"
        return [partial, done]
    done.text = f"{lead} {render_careful(problem, 0, n_ops, rng)} {stated}"
    return [done]


def _right_streak(attempts: list[Paragraph]) -> int:
    """How many attempts in a row, ending with the last, stated the same right answer."""
    streak = 0
    for attempt in reversed(attempts):
        if not attempt.correct or attempt.answer != attempts[-1].answer:
            break
        streak += 1
    return streak


def _next_attempt(problem: Problem, trace: Trace, style: TraceStyle, rng: random.Random) -> list[Paragraph]:
    attempts = trace.attempts
    last = attempts[-1]
    if len(attempts) >= style.max_attempts:
        return []
    if last.correct:
        p_continue = style.continue_after_right[min(_right_streak(attempts), len(style.continue_after_right)) - 1]
    else:
        p_continue = style.continue_after_wrong
    checks_quick = last.method == QUICK and style.quick_results_checked
    if rng.random() >= p_continue and not checks_quick:  # drawn either way: the same stream of choices
        return []
    last_chance = len(attempts) == style.max_attempts - 1  # a trace never runs out of attempts on a wrong answer
    if not last.correct and (last_chance or rng.random() < style.redo_after_wrong):
        return _attempt(problem, STEP, rng.choice(REDO_LEADS), style, rng)
    method = QUICK if not (last_chance or checks_quick) and rng.random() < style.check_quick else STEP
    return _attempt(problem, method, rng.choice(CHECK_LEADS[method]), style, rng)


def sample_trace(problem: Problem, style: TraceStyle, rng: random.Random) -> Trace:
    opening = Paragraph(None, None, False, rng.choice(OPENERS).format(e=problem.expression))
    first_method = QUICK if rng.random() < style.first_quick else STEP
    trace = Trace(
        problem, [opening, *_attempt(problem, first_method, rng.choice(FIRST_LEADS[first_method]), style, rng)]
    )
    while paragraphs := _next_attempt(problem, trace, style, rng):
        trace.paragraphs.extend(paragraphs)
    return trace
