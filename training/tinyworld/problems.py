"""Tiny-world problems: integer arithmetic a newcomer types first (`What is 2 + 2?`, `Compute 45 + 17 - 9 + 3.`).

1 to 5 operations of + and -, evaluated left to right, operands from 0 to 100, in several phrasings. The first
generation's form (`What is 3 + 14 - 7?`, operands 0-20, 2-4 operations) lies inside this distribution.
The problem file format (docs/tinyworld.md) is one JSONL line `{"question": ..., "answer": ...}` a problem.
Splits are drawn from one seeded stream and deduplicated by expression across splits, so no sum is asked in two
files, whatever its phrasing.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MIN_NUMBER, MAX_NUMBER = 0, 100
MIN_OPS, MAX_OPS = 1, 5
# How often each number of operations is asked (1..5): short sums, what people type first, are the most common.
OPS_WEIGHTS = (0.2, 0.25, 0.25, 0.15, 0.15)
SMALL_NUMBER = 20  # the first generation's range: a share of operands is drawn from it, so small sums stay common
SMALL_OPERAND_SHARE = 0.35
# How a question may be asked; the first is the first generation's form. `{}` is the expression.
PHRASINGS = (
    "What is {}?",
    "Compute {}.",
    "Calculate {}.",
    "What's {}?",
    "How much is {}?",
    "Evaluate {}.",
    "Work out {}.",
)
_EXPRESSION = r"(\d+(?: [+-] \d+)+)"
_QUESTION_RES = tuple(re.compile("^" + re.escape(p).replace(r"\{\}", _EXPRESSION) + "$") for p in PHRASINGS)


@dataclass(frozen=True)
class Problem:
    numbers: tuple[int, ...]  # len(ops) + 1 operands
    ops: tuple[str, ...]  # each "+" or "-"
    phrasing: int = field(default=0, compare=False)  # index into PHRASINGS: the same sum however it is asked

    @property
    def question(self) -> str:
        return PHRASINGS[self.phrasing].format(self.expression)

    @property
    def expression(self) -> str:
        parts = [str(self.numbers[0])]
        for op, number in zip(self.ops, self.numbers[1:]):
            parts.append(f"{op} {number}")
        return " ".join(parts)

    @property
    def answer(self) -> int:
        value = self.numbers[0]
        for op, number in zip(self.ops, self.numbers[1:]):
            value = value + number if op == "+" else value - number
        return value

    def to_json(self) -> dict:
        return {"question": self.question, "answer": str(self.answer)}


def parse_question(question: str) -> Problem:
    """Parse a tiny-world question in any of its phrasings; raises ValueError naming what is wrong."""
    text = question.strip()
    found = next(((phrasing, m) for phrasing, pattern in enumerate(_QUESTION_RES) if (m := pattern.match(text))), None)
    if found is None:
        raise ValueError(f"not a tiny-world question (expected e.g. 'What is 3 + 14 - 7?'): {question!r}")
    phrasing, match = found
    tokens = match.group(1).split(" ")
    numbers = tuple(int(t) for t in tokens[0::2])
    ops = tuple(tokens[1::2])
    if not MIN_OPS <= len(ops) <= MAX_OPS:
        raise ValueError(f"a tiny-world question has {MIN_OPS}-{MAX_OPS} operations, got {len(ops)}: {question!r}")
    if any(not MIN_NUMBER <= n <= MAX_NUMBER for n in numbers):
        raise ValueError(f"tiny-world numbers lie in {MIN_NUMBER}-{MAX_NUMBER}: {question!r}")
    return Problem(numbers, ops, phrasing)


def random_operand(rng: random.Random) -> int:
    upper = SMALL_NUMBER if rng.random() < SMALL_OPERAND_SHARE else MAX_NUMBER
    return rng.randint(MIN_NUMBER, upper)


def random_problem(rng: random.Random) -> Problem:
    n_ops = rng.choices(range(MIN_OPS, MAX_OPS + 1), weights=OPS_WEIGHTS)[0]
    numbers = tuple(random_operand(rng) for _ in range(n_ops + 1))
    ops = tuple(rng.choice("+-") for _ in range(n_ops))
    return Problem(numbers, ops, rng.randrange(len(PHRASINGS)))


def generate_splits(sizes: dict[str, int], seed: int) -> dict[str, list[Problem]]:
    """Draw disjoint splits, in the order given, from one seeded stream of distinct sums."""
    rng = random.Random(seed)
    seen: set[Problem] = set()  # equality ignores the phrasing
    return {name: _draw_distinct(rng, size, seen) for name, size in sizes.items()}


def fresh_problems(n: int, seed: int, used: Iterable[Problem]) -> list[Problem]:
    """`n` distinct problems drawn with `seed`, none of them a sum in `used` (however phrased): problems that no
    training, calibration or threshold choice has seen, to measure on."""
    return _draw_distinct(random.Random(seed), n, set(used))


def _draw_distinct(rng: random.Random, size: int, seen: set[Problem]) -> list[Problem]:
    chosen: list[Problem] = []
    while len(chosen) < size:
        problem = random_problem(rng)
        if problem not in seen:
            seen.add(problem)
            chosen.append(problem)
    return chosen


def write_jsonl(problems: list[Problem], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for problem in problems:
            handle.write(json.dumps(problem.to_json()) + "\n")
