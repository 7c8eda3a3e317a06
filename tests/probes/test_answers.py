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


def test_tinyworld_reads_what_its_whole_pattern_reads():
    """The reader skips the oblique form's costly regex where its words are absent; every paragraph the tiny world
    writes (every form, plain and oblique, slips and paragraphs with no result) reads as the whole pattern reads it."""
    import random

    from probexit.probes.words import words_value
    from probexit.training.tinyworld.problems import random_problem
    from probexit.training.tinyworld.traces import TraceStyle, sample_trace

    reader, rng, oblique = EXTRACTORS["tinyworld"], random.Random(5), 0
    for _ in range(300):
        for paragraph in sample_trace(random_problem(rng), TraceStyle(), rng).completion.split("\n\n"):
            matches = reader.PATTERN.findall(paragraph)
            value = next(group for group in matches[-1] if group) if matches else None
            whole = value if value is None or value.lstrip("-").isdigit() else str(words_value(value))
            assert reader.extract(paragraph) == whole, paragraph
            oblique += "is where the running total lands" in paragraph
    assert oblique, "the traces include the oblique form"


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
