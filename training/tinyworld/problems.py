"""Tiny-world problems: `What is 3 + 14 - 7?`, integers 0-20, 2-4 operations of + and -, left to right.

The problem file format (docs/tinyworld.md) fixes the question text and the JSONL line
`{"question": ..., "answer": ...}`.
Splits are drawn from one seeded stream and deduplicated across splits, so no question is in two files.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

MIN_NUMBER, MAX_NUMBER = 0, 20
MIN_OPS, MAX_OPS = 2, 4
QUESTION_RE = re.compile(r"^What is (\d+(?: [+-] \d+)+)\?$")


@dataclass(frozen=True)
class Problem:
    numbers: tuple[int, ...]  # len(ops) + 1 operands
    ops: tuple[str, ...]  # each "+" or "-"

    @property
    def question(self) -> str:
        return f"What is {self.expression}?"

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
    """Parse a contract question; raises ValueError naming what is wrong."""
    match = QUESTION_RE.match(question.strip())
    if not match:
        raise ValueError(f"not a tiny-world question (expected e.g. 'What is 3 + 14 - 7?'): {question!r}")
    tokens = match.group(1).split(" ")
    numbers = tuple(int(t) for t in tokens[0::2])
    ops = tuple(tokens[1::2])
    if not MIN_OPS <= len(ops) <= MAX_OPS:
        raise ValueError(f"a tiny-world question has {MIN_OPS}-{MAX_OPS} operations, got {len(ops)}: {question!r}")
    if any(not MIN_NUMBER <= n <= MAX_NUMBER for n in numbers):
        raise ValueError(f"tiny-world numbers lie in {MIN_NUMBER}-{MAX_NUMBER}: {question!r}")
    return Problem(numbers, ops)


def random_problem(rng: random.Random) -> Problem:
    n_ops = rng.randint(MIN_OPS, MAX_OPS)
    numbers = tuple(rng.randint(MIN_NUMBER, MAX_NUMBER) for _ in range(n_ops + 1))
    ops = tuple(rng.choice("+-") for _ in range(n_ops))
    return Problem(numbers, ops)


def generate_splits(sizes: dict[str, int], seed: int) -> dict[str, list[Problem]]:
    """Draw disjoint splits, in the order given, from one seeded stream of distinct problems."""
    rng = random.Random(seed)
    seen: set[Problem] = set()
    splits: dict[str, list[Problem]] = {}
    for name, size in sizes.items():
        chosen: list[Problem] = []
        while len(chosen) < size:
            problem = random_problem(rng)
            if problem not in seen:
                seen.add(problem)
                chosen.append(problem)
        splits[name] = chosen
    return splits


def write_jsonl(problems: list[Problem], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for problem in problems:
            handle.write(json.dumps(problem.to_json()) + "\n")
