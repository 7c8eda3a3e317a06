"""The savings report's arithmetic, on synthetic runs (the live run is tests/server/test_savings_live.py)."""

import numpy as np
import pytest

from probexit.benchmarks.savings import (
    BASELINE,
    DEFAULT,
    PROBE_RISKS,
    Setting,
    best_at_no_loss,
    bootstrap_ci,
    build_report,
    changed_answers,
    clopper_pearson,
    dominance,
    peer_settings,
    summarize,
)


def results(correct, reasoning, completion=None, wall=1.0):
    return [
        {
            "problem": i,
            "correct": c,
            "reasoning_tokens": reasoning,
            "completion_tokens": completion or reasoning + 10,
            "triggered": False,
            "wall_s": wall,
        }
        for i, c in enumerate(correct)
    ]


def test_summary_against_the_baseline():
    baseline = summarize(BASELINE, results([1, 1, 1, 0], 100), None)
    row = summarize(Setting("probe", "threshold=0.9", {}), results([1, 1, 0, 0], 60, wall=0.5), baseline)
    assert row["accuracy"] == 0.5 and row["tokens_saved_pct"] == pytest.approx(40.0)
    assert row["accuracy_delta_pts"] == pytest.approx(-25.0) and row["wall_saved_pct"] == pytest.approx(50.0)
    low, high = row["accuracy_ci"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0


def test_bootstrap_interval_narrows_with_more_problems():
    small = bootstrap_ci(np.array([1.0, 0.0] * 10), seed=0)
    large = bootstrap_ci(np.array([1.0, 0.0] * 500), seed=0)
    assert large[1] - large[0] < small[1] - small[0]


def rows_for(points):
    return [
        {
            "name": name,
            "param": str(i),
            "mean_reasoning_tokens": tokens,
            "accuracy": accuracy,
            "tokens_saved_pct": 100 * (1 - tokens / 100),
            "accuracy_delta_pts": 100 * (accuracy - 0.8),
        }
        for i, (name, tokens, accuracy) in enumerate(points)
    ]


def test_best_at_no_loss_allows_one_point():
    baseline = {"mean_reasoning_tokens": 100, "accuracy": 0.8}
    rows = rows_for([("probe", 50, 0.795), ("probe", 40, 0.78), ("probe", 70, 0.81), ("budget", 30, 0.8)])
    assert best_at_no_loss(rows, baseline)["mean_reasoning_tokens"] == 50


def test_dominance_reads_the_probe_curve_at_each_peer_point():
    baseline = {"mean_reasoning_tokens": 100, "accuracy": 0.8}
    rows = rows_for(
        [("probe", 40, 0.7), ("probe", 60, 0.8), ("first", 50, 0.6), ("consistency", 70, 0.85), ("budget", 20, 0.3)]
    )
    verdict = dominance(rows, baseline)
    assert verdict["first"]["probe_above_everywhere"]
    assert not verdict["consistency"]["probe_above_everywhere"]
    assert verdict["budget"]["points"][0]["probe_accuracy"] is None  # cheaper than any probe setting


def test_report_and_sweep():
    settings = peer_settings(120.0)
    assert {s.name for s in settings} == {"probe", "budget", "consistency", "confidence", "first", "oracle"}
    assert DEFAULT in settings and DEFAULT.early_exit is None  # the default row sends no early_exit object
    assert all(s.early_exit is not None for s in settings if s not in (DEFAULT, Setting("oracle", "-", None)))
    runs = {BASELINE.key: (BASELINE, results([1, 1, 0, 1], 100))}
    for setting, correct, tokens in [
        (Setting("probe", "t", {}), [1, 1, 0, 1], 60),
        (Setting("oracle", "-", None), [1, 1, 0, 1], 50),
        (Setting("first", "-", {}), [1, 0, 0, 1], 40),
    ]:
        runs[setting.key] = (setting, results(correct, tokens))
    report = build_report(runs, {"seed": 0}, "p.jsonl")
    assert report["best_at_no_loss"]["param"] == "t"
    assert report["best_share_of_oracle_saving"] == pytest.approx(40 / 50)
    assert "goals" not in report  # a report states numbers


def test_cached_runs_are_reused_only_for_the_same_model_probe_problems_and_sampling(tmp_path, capsys):
    import json

    from probexit.benchmarks.savings import _problems_digest, cached_runs
    from probexit.training.problem_files import ProblemRecord

    problems = [ProblemRecord("What is 1 + 2?", "3"), ProblemRecord("What is 2 + 2?", "4")]
    sampling = {"seed": 0, "temperature": 0.6}
    served = {"id": "tinyworld", "root": "assets/tinyworld/policy", "model_fingerprint": "a", "probe_fingerprint": "p"}
    log = tmp_path / "runs.jsonl"
    record = {
        "key": "none",
        "sampling": sampling,
        "n": 2,
        "problems": _problems_digest(problems),
        "served": served,
        "results": [{"correct": True}],
    }
    retrained = {**record, "key": "probe:0.5", "served": {**served, "model_fingerprint": "b"}}
    old_format = {k: v for k, v in record.items() if k not in ("problems", "served")} | {"key": "first"}
    log.write_text("".join(json.dumps(r) + "\n" for r in (record, retrained, old_format)))
    assert cached_runs(log, sampling, problems, served) == {"none": [{"correct": True}]}
    assert "2 earlier runs came from other problems, settings, model or probe" in capsys.readouterr().out
    assert cached_runs(log, sampling, problems[:1], served) == {}
    assert cached_runs(tmp_path / "missing.jsonl", sampling, problems, served) == {}


def test_harm_counts_right_answers_turned_wrong_problem_by_problem():
    baseline = results([1, 1, 0, 0, 1], 100)
    changed = changed_answers(results([1, 0, 1, 0, 1], 60), baseline)
    assert (changed["harms"], changed["helps"]) == (1, 1)
    assert changed["harm_rate"] == pytest.approx(0.2) and changed["help_rate"] == pytest.approx(0.2)
    low, high = changed["harm_ci"]
    assert 0.0 < low < 0.2 < high < 1.0
    # the same accuracy with different problems wrong is still a harm: it is not a difference of accuracies
    assert changed_answers(results([0, 1, 1, 0, 1], 60), baseline)["harms"] == 1


def test_exact_interval_is_honest_at_zero_and_narrows_with_more_problems():
    assert clopper_pearson(0, 300)[0] == 0.0 and 0.01 < clopper_pearson(0, 300)[1] < 0.013
    assert clopper_pearson(5, 5)[1] == 1.0
    assert clopper_pearson(3, 3000)[1] - clopper_pearson(3, 3000)[0] < clopper_pearson(3, 300)[1]


def test_report_has_the_default_row_and_harm_rows_with_intervals():
    runs = {
        BASELINE.key: (BASELINE, results([1, 1, 0, 1], 100)),
        "oracle:-": (Setting("oracle", "-", None), results([1, 1, 1, 1], 50)),
        DEFAULT.key: (DEFAULT, results([1, 1, 0, 1], 70)),
    }
    for risk in PROBE_RISKS:
        setting = Setting("probe", f"max_risk={risk}", {"rule": "probe", "max_risk": risk})
        runs[setting.key] = (setting, results([1, 0, 0, 1], 60))
    report = build_report(runs, {"seed": 0}, "p.jsonl")
    default = [r for r in report["policies"] if (r["name"], r["param"]) == ("probe", "default")]
    assert len(default) == 1 and default[0]["harms"] == 0 and default[0]["harm_ci"][0] == 0.0
    risk_rows = [r for r in report["policies"] if "max_risk" in r]
    assert sorted(r["max_risk"] for r in risk_rows) == sorted(PROBE_RISKS)
    for row in risk_rows:
        assert row["harms"] == 1 and row["harm_rate"] == pytest.approx(0.25)
        assert row["harm_ci"][0] <= row["harm_rate"] <= row["harm_ci"][1]
        assert {"helps", "help_rate", "help_ci", "accuracy_delta_pts"} <= set(row)


def test_doctests():
    import doctest

    from probexit.benchmarks import savings

    assert doctest.testmod(savings).failed == 0
