"""The savings report's arithmetic, on synthetic runs (the live run is tests/server/test_savings_live.py)."""
import numpy as np
import pytest

from probexit.benchmarks.savings import (BASELINE, Setting, best_at_no_loss, bootstrap_ci, build_report, dominance,
                                         peer_settings, summarize)


def results(correct, reasoning, completion=None, wall=1.0):
    return [{"problem": i, "correct": c, "reasoning_tokens": reasoning, "completion_tokens": completion or reasoning + 10,
             "triggered": False, "wall_s": wall} for i, c in enumerate(correct)]


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
    return [{"name": name, "param": str(i), "mean_reasoning_tokens": tokens, "accuracy": accuracy,
             "tokens_saved_pct": 100 * (1 - tokens / 100), "accuracy_delta_pts": 100 * (accuracy - 0.8)}
            for i, (name, tokens, accuracy) in enumerate(points)]


def test_best_at_no_loss_allows_one_point():
    baseline = {"mean_reasoning_tokens": 100, "accuracy": 0.8}
    rows = rows_for([("probe", 50, 0.795), ("probe", 40, 0.78), ("probe", 70, 0.81), ("budget", 30, 0.8)])
    assert best_at_no_loss(rows, baseline)["mean_reasoning_tokens"] == 50


def test_dominance_reads_the_probe_curve_at_each_peer_point():
    baseline = {"mean_reasoning_tokens": 100, "accuracy": 0.8}
    rows = rows_for([("probe", 40, 0.7), ("probe", 60, 0.8), ("first", 50, 0.6), ("consistency", 70, 0.85),
                     ("budget", 20, 0.3)])
    verdict = dominance(rows, baseline)
    assert verdict["first"]["probe_above_everywhere"]
    assert not verdict["consistency"]["probe_above_everywhere"]
    assert verdict["budget"]["points"][0]["probe_accuracy"] is None  # cheaper than any probe setting


def test_report_and_sweep():
    settings = peer_settings(120.0)
    assert {s.name for s in settings} == {"probe", "budget", "consistency", "confidence", "first", "oracle"}
    assert all(s.early_exit is not None for s in settings if s.name != "oracle")
    runs = {BASELINE.key: (BASELINE, results([1, 1, 0, 1], 100))}
    for setting, correct, tokens in [(Setting("probe", "t", {}), [1, 1, 0, 1], 60), (Setting("oracle", "-", None), [1, 1, 0, 1], 50),
                                     (Setting("first", "-", {}), [1, 0, 0, 1], 40)]:
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
    record = {"key": "none", "sampling": sampling, "n": 2, "problems": _problems_digest(problems), "served": served,
              "results": [{"correct": True}]}
    retrained = {**record, "key": "probe:0.5", "served": {**served, "model_fingerprint": "b"}}
    old_format = {k: v for k, v in record.items() if k not in ("problems", "served")} | {"key": "first"}
    log.write_text("".join(json.dumps(r) + "\n" for r in (record, retrained, old_format)))
    assert cached_runs(log, sampling, problems, served) == {"none": [{"correct": True}]}
    assert "2 earlier runs came from other problems, settings, model or probe" in capsys.readouterr().out
    assert cached_runs(log, sampling, problems[:1], served) == {}
    assert cached_runs(tmp_path / "missing.jsonl", sampling, problems, served) == {}
