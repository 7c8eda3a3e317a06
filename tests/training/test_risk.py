import numpy as np

from probexit.training.risk import NEVER, TraceScores, calibration_table, certify_threshold, exit_outcomes


def synthetic_traces(n, seed=0):
    """Scores that carry signal: right answers score higher; the first answer is wrong 40% of the time."""
    rng = np.random.default_rng(seed)
    traces = []
    for _ in range(n):
        correct = np.array([rng.random() > 0.4, True, True])
        scores = np.clip(np.where(correct, rng.normal(0.75, 0.15, 3), rng.normal(0.35, 0.15, 3)), 0, 1)
        traces.append(TraceScores(scores, correct))
    return traces


def test_exit_outcomes_use_the_first_boundary_over_threshold():
    traces = [TraceScores(np.array([0.2, 0.9]), np.array([False, True])),
              TraceScores(np.array([0.95, 0.1]), np.array([False, True]))]
    assert exit_outcomes(traces, 0.9) == (2, 1)
    assert exit_outcomes(traces, 0.99) == (0, 0)


def test_certified_thresholds_hold_on_fresh_data():
    calibration, fresh = synthetic_traces(2000, seed=1), synthetic_traces(20000, seed=2)
    for risk in (0.02, 0.05, 0.1):
        threshold = certify_threshold(calibration, risk)
        assert threshold < NEVER
        exits, wrong = exit_outcomes(fresh, threshold)
        assert wrong / exits <= risk + 0.01


def test_stricter_risks_get_higher_thresholds_and_impossible_ones_never_exit():
    table = calibration_table(synthetic_traces(1000), risks=(0.01, 0.05, 0.2))
    thresholds = [point["threshold"] for point in table]
    assert thresholds == sorted(thresholds, reverse=True)
    always_wrong = [TraceScores(np.array([0.9]), np.array([False]))] * 50
    assert certify_threshold(always_wrong, 0.05) == NEVER



def continuous_traces(n, seed):
    rng = np.random.default_rng(seed)
    traces = []
    for _ in range(n):
        correct = rng.random(4) > 0.4
        logits = np.where(correct, rng.normal(2.0, 1.2, 4), rng.normal(-1.5, 1.2, 4))
        traces.append(TraceScores(1 / (1 + np.exp(-logits)), correct))
    return traces


def test_continuous_scores_with_few_exits_at_the_top_still_certify():
    """No mass of scores at 1.0: the top thresholds let one trace exit at a time (a fixed sequence from the
    top stopped there and certified nothing on the real probe)."""
    threshold = certify_threshold(continuous_traces(1500, seed=3), 0.05)
    assert threshold < NEVER
    exits, wrong = exit_outcomes(continuous_traces(20000, seed=4), threshold)
    assert exits > 1000 and wrong / exits <= 0.05


def test_a_few_wrong_exits_at_the_top_do_not_end_the_sequence():
    """Three confident wrong answers at 0.995 are too few exits to test at 0.99; the sequence passes over them
    (a choice made from the scores alone) and goes on down to 0.51, the last threshold above the many wrong
    answers scored 0.5."""
    top_wrong = [TraceScores(np.array([0.995]), np.array([False]))] * 3
    right = [TraceScores(np.array([0.8]), np.array([True]))] * 1000
    low_wrong = [TraceScores(np.array([0.5]), np.array([False]))] * 200
    assert certify_threshold(top_wrong + right + low_wrong, 0.05) == 0.51
    assert certify_threshold(top_wrong, 0.05) == NEVER  # never certified from too few exits
