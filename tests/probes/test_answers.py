import pytest

from probexit.probes.answers import EXTRACTORS, get_extractor


@pytest.mark.parametrize(
    "names, text, expected",
    [
        pytest.param(["tinyworld"], "13 - 1 = 12. So the answer is 12.\n\n", "12", id="tinyworld"),
        pytest.param(["tinyworld"], "So the answer is -7.", "-7", id="tinyworld-negative"),
        pytest.param(["tinyworld"], "So the answer is 3. Wait. So the answer is 4.", "4", id="tinyworld-last-wins"),
        pytest.param(["tinyworld"], "So the answer is twelve.", None, id="tinyworld-not-a-number"),
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


def test_unknown_extractor_is_named():
    with pytest.raises(ValueError, match="nonsense"):
        get_extractor(["nonsense"])


def test_registry_names_match_keys():
    assert all(extractor.name == name for name, extractor in EXTRACTORS.items())
