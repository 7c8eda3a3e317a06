import random
import re

import pytest

from probexit.probes.answers import get_extractor
from probexit.probes.words import number_words
from probexit.training.tinyworld.problems import Problem, parse_question, random_problem
from probexit.training.tinyworld.traces import (
    OBLIQUE_CONCLUSIONS,
    PLAIN_CONCLUSIONS,
    QUICK,
    STEP,
    TraceStyle,
    explain_careful,
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
        pytest.param(45, "+", 17, 52, id="carry-forgotten-two-digits"),
        pytest.param(62, "-", 19, 53, id="borrow-forgotten-two-digits"),
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


@pytest.mark.parametrize(
    "value, op, number, text",
    [
        pytest.param(45, "+", 17, "45 + 10 = 55, then 55 + 7 = 62.", id="tens-then-units"),
        pytest.param(62, "-", 9, "62 - 9 = 53.", id="one-digit"),
        pytest.param(53, "+", 30, "53 + 30 = 83.", id="whole-tens"),
        pytest.param(8, "-", 30, "8 - 30 goes below zero: 30 - 8 = 22, so it is -22.", id="below-zero"),
        pytest.param(-22, "+", 57, "-22 + 57 = 57 - 22: 57 - 20 = 37, then 37 - 2 = 35.", id="back-above-zero"),
        pytest.param(-22, "+", 5, "-22 + 5 = -(22 - 5): 22 - 5 = 17, so -17.", id="still-negative"),
        pytest.param(
            -22, "-", 15, "-22 - 15 = -(22 + 15): 22 + 10 = 32, then 32 + 5 = 37, so -37.", id="more-negative"
        ),
    ],
)
def test_careful_steps_split_two_digit_operands_and_handle_signs(value, op, number, text):
    assert explain_careful(value, op, number) == text


def test_every_careful_sentence_ends_on_the_right_value():
    rng = random.Random(5)
    for _ in range(3000):
        value, number, op = rng.randint(-400, 500), rng.randint(0, 100), rng.choice("+-")
        expected = value + number if op == "+" else value - number
        assert explain_careful(value, op, number).rstrip(".").endswith(str(expected))


def test_trace_format():
    rng = random.Random(2)
    for _ in range(300):
        problem = random_problem(rng)
        trace = sample_trace(problem, TraceStyle(), rng)
        thinking, final = trace.completion.split("</think>")
        paragraphs = thinking.split("\n\n")
        assert paragraphs[-1] == "" and len(paragraphs) - 1 == len(trace.paragraphs)
        assert trace.paragraphs[0].answer is None and problem.expression in paragraphs[0]  # restates the task
        for paragraph in trace.attempts:
            assert paragraph.correct == (paragraph.answer == problem.answer)
            words = number_words(paragraph.answer)
            assert str(paragraph.answer) in paragraph.text.split(". ")[-1] or words in paragraph.text
        assert final == f"\n\nThe answer is \\boxed{{{trace.last_result}}}."


def test_checks_depend_on_correctness_and_overthinking_is_common():
    """In the data: far more re-checks after wrong answers than after right ones, yet many redundant checks, and the
    thinking ends on the right answer almost always."""
    rng = random.Random(3)
    after = {True: [], False: []}
    redundant = final_right = 0
    n = 4000
    for _ in range(n):
        trace = sample_trace(random_problem(rng), TraceStyle(), rng)
        attempts = trace.attempts
        for index, attempt in enumerate(attempts):
            after[attempt.correct].append(index < len(attempts) - 1)
        first_right = next((i for i, p in enumerate(attempts) if p.correct), None)
        redundant += first_right is not None and first_right < len(attempts) - 1
        final_right += attempts[-1].correct
    rate = {k: sum(v) / len(v) for k, v in after.items()}
    assert rate[False] > rate[True] + 0.3
    assert redundant / n > 0.45
    assert final_right / n > 0.97


def test_both_methods_occur_and_quick_slips_on_two_digit_sums():
    rng = random.Random(6)
    methods = {STEP: 0, QUICK: 0}
    for _ in range(500):
        for attempt in sample_trace(random_problem(rng), TraceStyle(), rng).attempts:
            methods[attempt.method] += 1
    assert min(methods.values()) > 200
    assert run_method(parse_question("What is 45 + 17?"), QUICK) == [52]


def test_a_text_reader_misses_the_oblique_conclusions_only():
    """What the trace style relies on: plain conclusions are read, oblique ones (in words, or inside a sentence about
    something else) are not, whatever precedes them."""
    reader = get_extractor(("reasoning",))
    for form in PLAIN_CONCLUSIONS:
        assert reader.extract(f"Quick mental math: 2 + 2 is 4. {form.format(n=4, w='four')}\n\n") == "4"
    for form in OBLIQUE_CONCLUSIONS:
        text = f"Let me be careful here. Quick: 2 + 2 is 4. {form.format(n=4, w='four')}\n\n"
        assert reader.extract(text.replace("Quick: 2 + 2 is 4. ", "")) is None


def test_a_quick_result_is_always_checked_carefully():
    """Whether a quick sum slipped is not visible in its text, so no trace stops on one: the last attempt is careful
    (and right), and a careful attempt follows every quick one."""
    rng = random.Random(8)
    for _ in range(500):
        attempts = sample_trace(random_problem(rng), TraceStyle(), rng).attempts
        assert attempts[-1].method == STEP and attempts[-1].correct
        assert all(later.method == STEP for quick, later in zip(attempts, attempts[1:]) if quick.method == QUICK)


def test_a_question_asked_casually_is_answered_obliquely():
    """The conclusion's form follows from the question's phrasing, so a model keeps both at a low temperature."""
    rng, style = random.Random(9), TraceStyle()
    seen = {True: 0, False: 0}
    for _ in range(400):
        problem = random_problem(rng)
        casual = problem.phrasing in style.oblique_phrasings
        forms = OBLIQUE_CONCLUSIONS if casual else PLAIN_CONCLUSIONS
        for attempt in sample_trace(problem, style, rng).attempts:
            stated = [f.format(n=attempt.answer, w=number_words(attempt.answer)) for f in forms]
            assert any(attempt.text.endswith(form) for form in stated), attempt.text
            seen[casual] += 1
    assert min(seen.values()) > 100


def test_phrasing_varies():
    rng = random.Random(4)
    traces = [sample_trace(random_problem(rng), TraceStyle(), rng) for _ in range(300)]
    openers = {re.split(r"[.,]", t.paragraphs[0].text)[0] for t in traces}
    conclusions = {t.attempts[0].text.split(". ")[-1].split(" ")[0] for t in traces}
    assert len(openers) >= 5 and len(conclusions) >= 5
    assert any(t.paragraphs[1].answer is None for t in traces)  # some attempts break into two paragraphs


def test_small_problems_of_the_first_generation_are_in_the_distribution():
    trace = sample_trace(Problem((2, 2), ("+",)), TraceStyle(), random.Random(0))
    assert trace.last_result == 4


def test_style_validation():
    with pytest.raises(ValueError):
        TraceStyle(first_quick=1.5)
    with pytest.raises(ValueError):
        TraceStyle(max_attempts=0)


def test_the_worlds_own_reader_reads_every_conclusion_and_nothing_else():
    """The `tinyworld` extractor knows every form the traces state a result in (plain or oblique, digits or words),
    and reads nothing in the paragraphs that state none (the opening, the first half of a broken attempt)."""
    reader = get_extractor(("tinyworld",))
    rng = random.Random(7)
    for _ in range(500):
        for paragraph in sample_trace(random_problem(rng), TraceStyle(), rng).paragraphs:
            stated = reader.extract(paragraph.text + "\n\n")
            assert stated == (None if paragraph.answer is None else str(paragraph.answer)), paragraph.text
