import random
import re

import pytest

from probexit.training.tinyworld.problems import random_problem
from probexit.training.tinyworld.traces import (
    ANSWER_PHRASE,
    STEP,
    TraceStyle,
    quick_step,
    run_method,
    sample_trace,
)


@pytest.mark.parametrize(
    "value, op, number, expected",
    [
        pytest.param(3, "-", 14, 11, id="sign-dropped"),
        pytest.param(23, "-", 7, 26, id="borrow-forgotten"),
        pytest.param(17, "+", 5, 12, id="carry-forgotten"),
        pytest.param(17, "-", 5, 12, id="no-slip"),
        pytest.param(3, "+", 4, 7, id="no-slip-add"),
    ],
)
def test_quick_slips(value, op, number, expected):
    assert quick_step(value, op, number) == expected


def test_careful_method_is_always_right():
    rng = random.Random(1)
    for _ in range(500):
        problem = random_problem(rng)
        assert run_method(problem, STEP)[-1] == problem.answer


def test_trace_format():
    rng = random.Random(2)
    for _ in range(300):
        problem = random_problem(rng)
        trace = sample_trace(problem, TraceStyle(), rng)
        thinking, final = trace.completion.split("</think>")
        paragraphs = thinking.split("\n\n")
        assert paragraphs[-1] == "" and len(paragraphs) - 1 == len(trace.paragraphs)
        for text, paragraph in zip(paragraphs, trace.paragraphs):
            assert text.endswith(ANSWER_PHRASE.format(paragraph.answer))
            assert paragraph.correct == (paragraph.answer == problem.answer)
        assert final == f"\n\nThe answer is \\boxed{{{trace.final_answer}}}."


def test_checks_depend_on_correctness_and_overthinking_is_common():
    """In the data: far more re-checks after wrong answers than after right ones, yet many redundant checks."""
    rng = random.Random(3)
    after = {True: [], False: []}
    redundant = 0
    n = 4000
    for _ in range(n):
        trace = sample_trace(random_problem(rng), TraceStyle(), rng)
        for index, paragraph in enumerate(trace.paragraphs):
            after[paragraph.correct].append(index < len(trace.paragraphs) - 1)
        first_right = next((i for i, p in enumerate(trace.paragraphs) if p.correct), None)
        redundant += first_right is not None and first_right < len(trace.paragraphs) - 1
    rate = {k: sum(v) / len(v) for k, v in after.items()}
    assert rate[False] > rate[True] + 0.2
    assert redundant / n > 0.5


def test_phrasing_varies():
    rng = random.Random(4)
    openers = {
        re.split(r"[.]", sample_trace(random_problem(rng), TraceStyle(), rng).paragraphs[0].text)[0] for _ in range(200)
    }
    assert len(openers) >= 5


def test_style_validation():
    with pytest.raises(ValueError):
        TraceStyle(first_quick=1.5)
