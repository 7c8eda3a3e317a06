"""The `reasoning` reader on hand-written paragraphs in the style of real reasoning traces."""

import pytest

from probexit.probes.answers import get_extractor
from probexit.probes.prose import numeric_value
from tests.probes.reasoning_paragraphs import CLOSING_REMARKS, FORMS, HARD, NOT_ANSWERS, SECOND_BATCH


@pytest.mark.parametrize("paragraph, expected", FORMS + NOT_ANSWERS + CLOSING_REMARKS)
def test_reasoning_reads_the_conclusion_a_paragraph_states(paragraph, expected):
    # The tracker hands the extractor the chunk as it stands at a paragraph break.
    assert get_extractor(["reasoning"]).extract(paragraph + "\n\n") == expected


def test_reasoning_precision_on_hand_labelled_paragraphs():
    """Of the answers it reads, at least 95% are the conclusion the paragraph states (hard cases included)."""
    extractor = get_extractor(["reasoning"])
    read = [
        (extractor.extract(p.values[0] + "\n\n"), p.values[1])
        for p in FORMS + NOT_ANSWERS + HARD + SECOND_BATCH + CLOSING_REMARKS
    ]
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
