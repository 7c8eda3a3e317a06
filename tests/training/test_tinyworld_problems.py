import json
import random

import pytest

from probexit.training.tinyworld.problems import Problem, generate_splits, parse_question, random_problem, write_jsonl


def test_splits_are_disjoint_and_deterministic():
    first = generate_splits({"train": 3000, "validation": 300, "test": 300}, seed=5)
    again = generate_splits({"train": 3000, "validation": 300, "test": 300}, seed=5)
    assert first == again
    sets = {name: {p.question for p in problems} for name, problems in first.items()}
    assert all(len(s) == len(first[name]) for name, s in sets.items())  # no duplicates within a split
    assert not (sets["train"] & sets["validation"] or sets["train"] & sets["test"] or sets["validation"] & sets["test"])


def test_answers_are_left_to_right():
    assert parse_question("What is 3 + 14 - 7?").answer == 10
    assert parse_question("What is 0 - 20 - 20 - 20 - 20?").answer == -80
    assert parse_question("What is 5 - 3 + 2?").answer == 4  # (5 - 3) + 2, not 5 - (3 + 2)


def test_generated_problems_follow_the_contract():
    rng = random.Random(0)
    for _ in range(2000):
        problem = random_problem(rng)
        assert 2 <= len(problem.ops) <= 4 and all(0 <= n <= 20 for n in problem.numbers)
        assert parse_question(problem.question) == problem


@pytest.mark.parametrize(
    "question",
    [
        pytest.param("What is 3 + 14?", id="one-op"),
        pytest.param("What is 1 + 2 + 3 + 4 + 5 + 6?", id="five-ops"),
        pytest.param("What is 3 * 4 + 1?", id="times"),
        pytest.param("What is 21 + 1 + 1?", id="out-of-range"),
        pytest.param("what is 1 + 2 + 3", id="format"),
    ],
)
def test_non_contract_questions_are_refused(question):
    with pytest.raises(ValueError):
        parse_question(question)


def test_jsonl_lines(tmp_path):
    write_jsonl([Problem((3, 14, 7), ("+", "-"))], tmp_path / "p.jsonl")
    assert json.loads((tmp_path / "p.jsonl").read_text()) == {"question": "What is 3 + 14 - 7?", "answer": "10"}
