"""`probexit bench structured`: how one answer is graded and how the runs become the report (fast; the live run is
tests/server/test_structured_bench_live.py)."""

from types import SimpleNamespace

import pytest

from probexit.benchmarks.structured_outputs import EXITS, FORMS, build_report, grade, summary_lines
from probexit.probes.equivalence import MathEquivalence
from probexit.training.problem_files import ProblemRecord

PROBLEM = ProblemRecord("What is 3 + 4?", "7")


def response(content: str, reasoning: str = "3 + 4 = 7.", triggered: bool = True, tokens: int = 10):
    extra = {"early_exit": {"triggered": triggered, "reasoning_tokens": tokens}, "reasoning_content": reasoning}
    choice = SimpleNamespace(message=SimpleNamespace(content=content), model_extra=extra, finish_reason="stop")
    return SimpleNamespace(choices=[choice])


@pytest.mark.parametrize(
    "form, content, valid, correct",
    [
        ("schema", '{"answer":7}', True, True),
        ("schema", '{"answer":8}', True, False),
        ("schema", '{"answer":"7"}', False, False),  # not an integer
        ("schema", '{"answer":7', False, False),  # cut short
        ("schema", '{"answer":7,"why":"sum"}', False, False),  # no other properties
        ("free", "The answer is \\boxed{7}.", True, True),
        ("free", "I do not know.", True, False),
    ],
)
def test_an_answer_is_valid_when_it_parses_and_matches_the_schema(form, content, valid, correct):
    graded = grade(response(content), PROBLEM, form, MathEquivalence())
    assert (graded["valid"], graded["correct"]) == (valid, correct)
    assert graded["reasoning_tokens"] == 10 and graded["triggered"]


def test_the_report_compares_the_thinking_saved_with_and_without_the_schema():
    def runs(tokens: int, triggered: bool, reasoning: str, content: str):
        return [grade(response(content, reasoning, triggered, tokens), PROBLEM, "schema", MathEquivalence())] * 2

    graded = {
        "free/early_exit": runs(4, True, "short", '{"answer":7}'),
        "free/to_the_end": runs(10, False, "long", '{"answer":7}'),
        "schema/early_exit": runs(5, True, "shorter", '{"answer":7}'),
        "schema/to_the_end": runs(10, False, "long", "{"),
    }
    report = build_report(graded, {"seed": 0}, "problems.jsonl")
    assert set(report["runs"]) == {f"{form}/{exit_}" for form in FORMS for exit_ in EXITS}
    assert report["saved_thinking_pct"] == {"free": pytest.approx(60.0), "schema": pytest.approx(50.0)}
    assert report["saved_difference_pts"] == pytest.approx(-10.0)
    assert report["same_thinking_pct"] == {"early_exit": 0.0, "to_the_end": 100.0}
    assert report["runs"]["schema/to_the_end"]["valid_pct"] == 0.0 and report["invalid_schema_answers"] == ["{", "{"]
    assert report["runs"]["schema/early_exit"]["triggered_pct"] == 100.0
    assert len(summary_lines(report)) == 2
