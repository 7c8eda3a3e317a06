"""The engine-overhead benchmark on the real CPU engine (few prompts, one round): what it measures, not how fast."""

import json

import pytest

from probexit.benchmarks.engine_overhead import run_engine_overhead, summary_lines
from probexit.cli.main import main
from probexit.training.tinyworld.build import tiny_engine_kwargs


@pytest.mark.slow
def test_never_firing_probe_is_timed_and_changes_no_token(test_model_dir, tmp_path):
    from tests.conftest import random_linear_probe

    random_linear_probe(test_model_dir, tmp_path / "probe")
    questions = ["What is 3 + 14 - 7?", "What is 20 - 5 - 9 + 1?", "What is 8 + 8?", "What is 0 - 13 + 2?"]
    report = run_engine_overhead(
        test_model_dir,
        tmp_path / "probe",
        questions,
        tmp_path / "out",
        rounds=2,
        max_tokens=48,
        engine_kwargs=tiny_engine_kwargs(),
    )
    assert report["token_identical"] is True
    assert report["probe_step_us"]["steps"] > 0 and report["probe_step_us"]["median"] > 0
    assert 0 < report["step_work_share_pct"] < 100
    assert report["tokens_per_s"]["disabled"] > 0 and report["ratio_enabled_over_disabled"] > 0
    ratios = report["round_ratios"]["all"]
    assert report["round_ratios"]["sem"] == pytest.approx(abs(ratios[0] - ratios[1]) / 2, abs=1e-4)
    assert json.loads((tmp_path / "out" / "engine_overhead.json").read_text()) == report


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    assert main(["bench", "engine-overhead", "--out", str(tmp_path), "--rounds", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err


def test_summary_says_when_no_step_timings_arrived():
    report = {
        "ratio_enabled_over_disabled": 0.99,
        "slowdown_pct": 1.0,
        "token_identical": True,
        "step_work_share_pct": 0.0,
        "probe_step_us": {"steps": 0, "median": None, "p99": None},
        "round_ratios": {"sem": None},  # one round: no standard error
    }
    assert "no step timings arrived" in summary_lines(report)[0]
    report["probe_step_us"] = {"steps": 10, "median": 50.0, "p99": 400.0}
    report["step_work_share_pct"] = 0.9
    assert "median 50 us, p99 400 us over 10 steps, 0.90%" in summary_lines(report)[0]
    report["round_ratios"] = {"sem": 0.011}
    assert "(+1.0% slower, round ratios' standard error 1.1 points)" in summary_lines(report)[0]
