import pytest

from probexit.probes.answers import EXTRACTORS, final_answer, get_extractor


@pytest.mark.parametrize(
    "names, text, expected",
    [
        pytest.param(["tinyworld"], "13 - 1 = 12. So the answer is 12.\n\n", "12", id="tinyworld"),
        pytest.param(["tinyworld"], "So the answer is -7.", "-7", id="tinyworld-negative"),
        pytest.param(["tinyworld"], "So the answer is 3. Wait. So the answer is 4.", "4", id="tinyworld-last-wins"),
        pytest.param(["tinyworld"], "So the answer is twelve.", "12", id="tinyworld-in-words"),
        pytest.param(["tinyworld"], "So I get minus forty-one.", "-41", id="tinyworld-negative-in-words"),
        pytest.param(["tinyworld"], "63 is where the running total lands.", "63", id="tinyworld-inside-a-sentence"),
        pytest.param(["tinyworld"], "So the answer is unclear.", None, id="tinyworld-not-a-number"),
        pytest.param(["tinyworld"], "Then 59 + 9 = 68.", None, id="tinyworld-a-step-is-no-conclusion"),
        pytest.param(["boxed"], r"thus \boxed{\frac{1}{2}} done", r"\frac{1}{2}", id="boxed-nested"),
        pytest.param(["boxed"], r"\boxed{1} then \boxed{2}", "2", id="boxed-last"),
        pytest.param(["boxed"], r"\boxed{unbalanced", None, id="boxed-unbalanced"),
        pytest.param(["answer_is"], "So the final answer is: 42.\n", "42", id="answer-is"),
        pytest.param(["answer_is"], "The answer is $x = 3$.", "x = 3", id="answer-is-latex"),
        pytest.param(["tinyworld", "boxed"], r"\boxed{5}", "5", id="first-match-falls-through"),
        pytest.param(["tinyworld", "boxed"], "no answer here", None, id="nothing"),
    ],
)
def test_extraction(names, text, expected):
    assert get_extractor(names).extract(text) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        pytest.param("\n\nThe answer is \\boxed{12}.", "12", id="boxed"),
        pytest.param("The answer is \\boxed{12}, not 13.", "12", id="boxed-before-other-text"),
        pytest.param("The final answer is 12.", "12", id="answer-is"),
        pytest.param("Adding them, the total comes to 12.", "12", id="closing-statement"),
        pytest.param("nothing here", None, id="none-stated"),
        pytest.param(None, None, id="cut-off-inside-the-thinking"),
    ],
)
def test_the_final_answer_is_what_a_client_reads(answer, expected):
    assert final_answer(answer) == expected


def test_unknown_extractor_is_named():
    with pytest.raises(ValueError, match="nonsense"):
        get_extractor(["nonsense"])


def test_registry_names_match_keys():
    assert all(extractor.name == name for name, extractor in EXTRACTORS.items())


# -- the `reasoning` extractor, on paragraphs written in the style of real reasoning traces ---------------------
from tests.probes.reasoning_paragraphs import CLOSING_REMARKS, FORMS, HARD, NOT_ANSWERS, SECOND_BATCH  # noqa: E402


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
    from probexit.probes.answers import numeric_value

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
