import numpy as np
import pytest

from probexit.training.risk import (
    GRID,
    NEVER,
    TraceScores,
    calibration_table,
    certify_threshold,
    outcomes,
)


def trace(scores, correct, final_correct=True):
    return TraceScores(np.array(scores, dtype=float), np.array(correct, dtype=bool), final_correct)


def synthetic_traces(n, seed=0, slip=0.4, final_right=0.97):
    """Scores that carry signal (right answers score higher); the first answer is wrong `slip` of the time, the
    later ones are right, and the full trace's final answer is right `final_right` of the time."""
    rng = np.random.default_rng(seed)
    traces = []
    for _ in range(n):
        correct = np.array([rng.random() > slip, True, True])
        scores = np.clip(np.where(correct, rng.normal(0.75, 0.15, 3), rng.normal(0.35, 0.15, 3)), 0, 1)
        traces.append(TraceScores(scores, correct, bool(rng.random() < final_right)))
    return traces


@pytest.mark.parametrize(
    "scores, correct, final_correct, counts",
    [
        pytest.param([0.9], [False], True, (1, 1, 1, 0), id="wrong-exit-on-a-right-trace-harms"),
        pytest.param([0.9], [False], False, (1, 1, 0, 0), id="wrong-exit-on-a-wrong-trace-is-no-harm"),
        pytest.param([0.9], [True], False, (1, 0, 0, 1), id="right-exit-on-a-wrong-trace-helps"),
        pytest.param([0.9], [True], True, (1, 0, 0, 0), id="right-exit-on-a-right-trace-changes-nothing"),
        pytest.param([0.2, 0.95], [False, True], True, (1, 0, 0, 0), id="the-first-boundary-over-threshold-decides"),
        pytest.param([0.2, 0.3], [False, False], True, (0, 0, 0, 0), id="no-exit-no-harm"),
        pytest.param([], [], True, (0, 0, 0, 0), id="no-boundary-at-all"),
    ],
)
def test_harm_is_right_turned_wrong_against_the_full_trace(scores, correct, final_correct, counts):
    result = outcomes([trace(scores, correct, final_correct)], 0.9)
    assert (result.exits, result.wrong_exits, result.harms, result.helps) == counts
    assert result.n == 1


def test_rates_count_every_request_not_only_the_exits():
    traces = [trace([0.95], [False], True)] + [trace([0.1], [True], True)] * 9 + [trace([0.99], [True], False)]
    result = outcomes(traces, 0.9)
    assert result.n == 11 and result.exits == 2
    assert result.harm_rate == pytest.approx(1 / 11) and result.help_rate == pytest.approx(1 / 11)
    assert result.accuracy_change == pytest.approx(0.0) and result.premature_exit_rate == pytest.approx(0.5)


@pytest.mark.slow
def test_certified_thresholds_hold_on_fresh_data():
    calibration, fresh = synthetic_traces(2000, seed=1), synthetic_traces(20000, seed=2)
    for risk in (0.01, 0.02, 0.05, 0.1):
        threshold = certify_threshold(calibration, risk)
        assert threshold < NEVER
        assert outcomes(fresh, threshold).harm_rate <= risk + 0.005


def test_certification_refuses_a_threshold_whose_harm_exceeds_the_tolerated_rate():
    """Below 0.61 a tenth of the requests are harmed: the sequence stops at 0.61 for every tolerated rate under
    that; a rate above it certifies the lowest threshold of the grid."""
    safe = [trace([0.8], [True])] * 900
    harmed = [trace([0.6], [False])] * 100
    assert outcomes(safe + harmed, 0.6).harm_rate == pytest.approx(0.1)
    for risk in (0.01, 0.05, 0.08):
        assert certify_threshold(safe + harmed, risk) == 0.61
    assert certify_threshold(safe + harmed, 0.15) == GRID[-1]


def test_wrong_exits_on_traces_the_model_gets_wrong_anyway_do_not_count_as_risk():
    """The same exits, premature every time, harm nothing when the full traces end wrong too."""
    right = [trace([0.8], [True])] * 900
    lost_anyway = [trace([0.6], [False], final_correct=False)] * 100
    assert certify_threshold(right + lost_anyway, 0.01) == GRID[-1]


def test_stricter_risks_get_higher_thresholds_and_impossible_ones_never_exit():
    table = calibration_table(synthetic_traces(1000), risks=(0.01, 0.05, 0.2))
    thresholds = [point["threshold"] for point in table]
    assert thresholds == sorted(thresholds, reverse=True)
    assert all(point["harm_calibration"] <= point["max_risk"] for point in table)
    always_harmed = [trace([0.995], [False])] * 50
    assert certify_threshold(always_harmed, 0.05) == NEVER


def test_too_few_requests_for_a_flawless_record_certify_nothing():
    assert certify_threshold([trace([0.9], [True])] * 100, 0.01) == NEVER  # 0.99^100 > 0.1
    assert certify_threshold([trace([0.9], [True])] * 300, 0.01) == GRID[-1]


def test_a_harmful_exit_among_the_few_at_the_top_does_not_end_the_sequence():
    """Three confident wrong answers at 0.995 harm 3 of 1,203 requests, well under 5%: the sequence goes on down to
    0.51, the last threshold above the many harmful answers scored 0.5."""
    top_wrong = [trace([0.995], [False])] * 3
    right = [trace([0.8], [True])] * 1000
    low_wrong = [trace([0.5], [False])] * 200
    assert certify_threshold(top_wrong + right + low_wrong, 0.05) == 0.51


def test_doctests():
    import doctest

    from probexit.training import probe_job, risk

    for module in (risk, probe_job):
        assert doctest.testmod(module).failed == 0


def test_every_sampled_trace_is_a_request_even_one_without_an_intermediate_answer():
    """The job's harm denominator is every trace of the split; each trace's final answer is read after its
    thinking."""
    import torch

    from probexit.probes.equivalence import MathEquivalence
    from probexit.training.probe_job import label, trace_scores
    from probexit.training.problem_files import ProblemRecord
    from probexit.training.trace_cache import BoundaryRecord, TraceRecord

    def boundary(answer):
        return BoundaryRecord(3, 0, 0, 4, answer, torch.zeros(4, dtype=torch.float16), 0.5, -0.1, -0.05)

    ending = "\n\n</think>\n\nThe answer is \\boxed{{{}}}."
    traces = [
        TraceRecord(0, 0, [], [], "So the answer is 5." + ending.format(4), "stop", [boundary("5")]),
        TraceRecord(0, 1, [], [], "No answer stated." + ending.format(4), "stop", []),
        TraceRecord(1, 0, [], [], "So the answer is 7.\n\nSo the answer is 7.", "length", [boundary("7")]),
    ]
    data = label(traces, [ProblemRecord("q0", "4"), ProblemRecord("q1", "7")], MathEquivalence())
    assert data.final_correct.tolist() == [True, True, False]  # the third was cut off inside its thinking
    requests = trace_scores(data, np.array([0.9, 0.9]))
    assert len(requests) == 3 and len(requests[1].scores) == 0
    result = outcomes(requests, 0.5)
    assert (result.n, result.exits, result.harms, result.helps) == (3, 2, 1, 1)
