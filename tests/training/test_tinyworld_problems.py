import json
import random

import pytest

from probexit.training.tinyworld.problems import (
    PHRASINGS,
    Problem,
    generate_splits,
    parse_question,
    random_problem,
    write_jsonl,
)


def test_splits_are_disjoint_and_deterministic():
    first = generate_splits({"train": 3000, "validation": 300, "test": 300}, seed=5)
    again = generate_splits({"train": 3000, "validation": 300, "test": 300}, seed=5)
    assert first == again
    sets = {name: {p.expression for p in problems} for name, problems in first.items()}
    assert all(len(s) == len(first[name]) for name, s in sets.items())  # no duplicates within a split
    assert not (sets["train"] & sets["validation"] or sets["train"] & sets["test"] or sets["validation"] & sets["test"])


def test_answers_are_left_to_right():
    assert parse_question("What is 3 + 14 - 7?").answer == 10
    assert parse_question("What is 0 - 20 - 20 - 20 - 20?").answer == -80
    assert parse_question("What is 5 - 3 + 2?").answer == 4  # (5 - 3) + 2, not 5 - (3 + 2)


def test_generated_problems_stay_within_the_worlds_range():
    rng = random.Random(0)
    problems = [random_problem(rng) for _ in range(4000)]
    for problem in problems:
        assert 1 <= len(problem.ops) <= 5 and all(0 <= n <= 100 for n in problem.numbers)
        again = parse_question(problem.question)
        assert again == problem and again.question == problem.question
    assert {len(p.ops) for p in problems} == {1, 2, 3, 4, 5}
    assert {p.phrasing for p in problems} == set(range(len(PHRASINGS)))
    assert sum(max(p.numbers) <= 20 for p in problems) > 100  # the first generation's sums stay common


@pytest.mark.parametrize(
    "question, answer",
    [
        pytest.param("What is 2 + 2?", 4, id="one-op"),
        pytest.param("What is 7 + 8?", 15, id="carry"),
        pytest.param("What is 100 - 37?", 63, id="hundred"),
        pytest.param("Compute 45 + 17 - 9 + 3.", 56, id="compute"),
        pytest.param("Calculate 12 - 30.", -18, id="calculate"),
        pytest.param("What's 5 + 5 + 5 + 5 + 5 + 5?", 30, id="whats-five-ops"),
        pytest.param("How much is 99 + 1?", 100, id="how-much"),
        pytest.param("What is 3 + 14 - 7?", 10, id="first-generation"),
    ],
)
def test_a_newcomers_first_questions_parse(question, answer):
    problem = parse_question(question)
    assert problem.answer == answer and problem.question == question


@pytest.mark.parametrize(
    "question",
    [
        pytest.param("What is 3?", id="no-op"),
        pytest.param("What is 1 + 2 + 3 + 4 + 5 + 6 + 7?", id="six-ops"),
        pytest.param("What is 3 * 4 + 1?", id="times"),
        pytest.param("What is 101 + 1?", id="out-of-range"),
        pytest.param("what is 1 + 2 + 3", id="format"),
    ],
)
def test_questions_outside_the_world_are_refused(question):
    with pytest.raises(ValueError):
        parse_question(question)


def test_jsonl_lines(tmp_path):
    write_jsonl([Problem((3, 14, 7), ("+", "-"))], tmp_path / "p.jsonl")
    assert json.loads((tmp_path / "p.jsonl").read_text()) == {"question": "What is 3 + 14 - 7?", "answer": "10"}
