import pytest

from probexit.probes.equivalence import ExactEquivalence, MathEquivalence, make_equivalence


@pytest.mark.parametrize(
    "answer, reference, same",
    [
        pytest.param("10", "10", True, id="equal"),
        pytest.param("10.0", "10", True, id="float"),
        pytest.param(r"\frac{1}{2}", "0.5", True, id="fraction"),
        pytest.param("-3", "3", False, id="sign"),
        pytest.param("11", "10", False, id="different"),
        pytest.param(r"\frac{1", "1", False, id="malformed-latex"),
    ],
)
def test_math_equivalence(answer, reference, same):
    assert MathEquivalence().same(answer, reference) is same


def test_exact_equivalence_normalises():
    assert ExactEquivalence().same("  Paris. ", "paris")
    assert not ExactEquivalence().same("Lyon", "Paris")


def test_judge_needs_an_endpoint():
    with pytest.raises(ValueError, match="--judge-url"):
        make_equivalence("judge")
    with pytest.raises(ValueError, match="unknown"):
        make_equivalence("vibes")
