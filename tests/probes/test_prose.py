"""The `reasoning` reader on hand-written paragraphs in the style of real reasoning traces."""

import pytest

from probexit.probes.answers import get_extractor
from probexit.probes.prose import ReasoningExtractor, numeric_value, question_options
from tests.probes.reasoning_paragraphs import (
    BY_CONTENT,
    CHOICE_NON_FORMS,
    CHOICES,
    CLOSING_REMARKS,
    FORMS,
    HARD,
    LONG_REMARKS,
    NOT_ANSWERS,
    OPTIONS_QUESTION,
    SECOND_BATCH,
    WORD_PROBLEM_NON_FORMS,
    WORD_PROBLEMS,
)

READ = FORMS + NOT_ANSWERS + CLOSING_REMARKS + WORD_PROBLEMS + WORD_PROBLEM_NON_FORMS + CHOICES + CHOICE_NON_FORMS
READ += LONG_REMARKS


@pytest.mark.parametrize("paragraph, expected", READ)
def test_reasoning_reads_the_conclusion_a_paragraph_states(paragraph, expected):
    # The tracker hands the extractor the chunk as it stands at a paragraph break.
    assert get_extractor(["reasoning"]).extract(paragraph + "\n\n") == expected


def test_reasoning_precision_on_hand_labelled_paragraphs():
    """Of the answers it reads, at least 95% are the conclusion the paragraph states (hard cases included)."""
    extractor = get_extractor(["reasoning"])
    read = [(extractor.extract(p.values[0] + "\n\n"), p.values[1]) for p in READ + HARD + SECOND_BATCH]
    read = [(answer, label) for answer, label in read if answer is not None]
    assert sum(answer == label for answer, label in read) / len(read) >= 0.95


def test_reasoning_reads_only_the_last_paragraph_of_a_chunk():
    """A chunk grows over paragraphs that state nothing; an earlier statement in it is not re-read."""
    chunk = "So the sum is 70.\n\nBut wait, I should check the digits.\n\n"
    assert get_extractor(["reasoning"]).extract(chunk) is None
    assert get_extractor(["reasoning"]).extract(chunk + "Yes, so the sum is 70.\n\n") == "70"


def test_reasoning_reads_the_statement_before_a_turn_to_rechecking():
    extractor = get_extractor(["reasoning"])
    assert extractor.extract("So the total is 117. Let me verify this.\n\n") == "117"
    assert extractor.extract("So x = 5. Wait, that can't be right.\n\n") == "5"
    assert extractor.extract("So x = 5. Wait, so x = 6 instead.\n\n") == "6"  # a remark with a value is read


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("2√5", "2\\sqrt{5}", id="root"),
        pytest.param("√(13)", "\\sqrt{13}", id="root-parenthesised"),
        pytest.param("3π/4", "3\\pi/4", id="pi"),
        pytest.param("(−∞, 4]", "(-\\infty, 4]", id="infinity-minus"),
        pytest.param("\\( \\boxed{12} \\)", "12", id="wrapper"),
        pytest.param("468 square units", "468", id="units"),
        pytest.param("336^\\circ", "336", id="degrees"),
        pytest.param("1,000,000", "1000000", id="thousands"),
        pytest.param("(1, 2)", "(1, 2)", id="point"),
        pytest.param("12 +", None, id="dangling-operator"),
        pytest.param("0)", None, id="unbalanced"),
        pytest.param("x + 1", None, id="free-variable"),
        pytest.param("3 times larger", None, id="comparison"),
    ],
)
def test_numeric_value_normalises_for_math_verify(text, expected):
    assert numeric_value(text) == expected


def test_reasoning_answers_grade_with_math_verify():
    from probexit.probes.equivalence import MathEquivalence

    extractor, same = get_extractor(["reasoning"]), MathEquivalence().same
    for paragraph, gold in [
        ("Therefore the distance is 2√5.", "2\\sqrt{5}"),
        ("So the ratio is 5/7.", "\\frac{5}{7}"),
        ("So the solution set is [1, 3).", "[1,3)"),
        ("The sum is \\( 21 + 49 \\).", "70"),
    ]:
        assert same(extractor.extract(paragraph + "\n\n"), gold), paragraph


@pytest.mark.parametrize("paragraph, expected", BY_CONTENT)
def test_an_option_named_by_its_content_is_read_as_its_letter(paragraph, expected):
    """Bound to a question that lists its options, the reader names the option a conclusion states."""
    assert ReasoningExtractor().for_question(OPTIONS_QUESTION).extract(paragraph + "\n\n") == expected


def test_without_the_question_an_option_content_stays_a_value():
    assert ReasoningExtractor().extract("So the stopping distance is 18 m.\n\n") == "18"


def test_the_registry_binds_the_question_to_the_readers_that_use_it():
    reader = get_extractor(["boxed", "reasoning"]).for_question(OPTIONS_QUESTION)
    assert reader.extract("So the stopping distance is 24 m.\n\n") == "C"
    assert reader.extract("So it is \\boxed{24}.\n\n") == "24"  # a box states its own value


@pytest.mark.parametrize(
    "question, expected",
    [
        pytest.param("Pick one.\nA) 3\nB) 5\n", (("A", "3"), ("B", "5")), id="parenthesis"),
        pytest.param(
            "Pick one.\n(A) 3 kg\n(B) 5 kg\n(C) 7 kg", (("A", "3 kg"), ("B", "5 kg"), ("C", "7 kg")), id="both"
        ),
        pytest.param("Pick one.\nA. red\nB. blue", (("A", "red"), ("B", "blue")), id="dot"),
        pytest.param("How many apples are left?", (), id="no-options"),
        pytest.param("Pick one.\nB: 3\nA: 5", (), id="out-of-order"),
        pytest.param("A: only one option", (), id="one-option"),
        pytest.param(
            "Example:\nA: 1\nB: 2\nAnswer: B\n\nNow:\n(A) 7 m\n(B) 9 m\n(C) 11 m\n",
            (("A", "7 m"), ("B", "9 m"), ("C", "11 m")),
            id="the-last-question-of-several",
        ),
        pytest.param("Pick one.\nA: 3\nB: 5\nD: 9\n", (), id="a-gap-breaks-the-run"),
    ],
)
def test_question_options(question, expected):
    assert question_options(question) == expected
