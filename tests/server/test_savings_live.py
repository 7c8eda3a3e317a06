"""`probexit bench savings` end to end against the session's real server (a reduced sweep, few problems)."""

import asyncio
import json

import pytest

from probexit.benchmarks.savings import (
    COMPARED,
    ORACLE,
    Setting,
    add_compared_probe,
    compared_settings,
    run_benchmark,
)
from probexit.training.problem_files import ProblemRecord
from probexit.training.tinyworld.problems import generate_splits

SETTINGS = [
    Setting("probe", "threshold=0.5", {"rule": "probe", "threshold": 0.5}),
    Setting("probe", "max_risk=0.05", {"rule": "probe", "max_risk": 0.05}),
    Setting("budget", "tokens=10", {"rule": "budget", "budget": 10}),
    Setting("consistency", "k=2", {"rule": "consistency", "k": 2}),
    Setting("confidence", "min_prob=0.2", {"rule": "confidence", "threshold": 0.2}),
    Setting("first", "-", {"rule": "first"}),
    ORACLE,
]


@pytest.mark.slow
def test_savings_report_end_to_end(server, tmp_path):
    problems = [ProblemRecord(p.question, str(p.answer)) for p in generate_splits({"bench": 6}, seed=3)["bench"]]
    sampling = {"seed": 0, "temperature": 0.6, "top_p": 0.95, "max_tokens": 400}
    out = tmp_path / "savings"

    def run():
        return asyncio.run(
            run_benchmark(
                server.base_url + "/v1",
                server.api_key,
                problems,
                out,
                sampling,
                concurrency=6,
                problems_file="synthetic",
                settings=SETTINGS,
            )
        )

    report = run()
    assert report["baseline"]["n"] == 6 and report["baseline"]["mean_reasoning_tokens"] > 0
    names = {(row["name"], row["param"]) for row in report["policies"]}
    assert ("first", "-") in names and ("budget", "tokens=10") in names
    # The session's probe has no calibration table: max_risk is refused and reported, not fatal.
    assert "probe:max_risk=0.05" in report["unavailable"]
    budget = next(r for r in report["policies"] if r["name"] == "budget")
    assert budget["mean_reasoning_tokens"] <= 11 and budget["tokens_saved_pct"] > 0
    probe = next(r for r in report["policies"] if r["name"] == "probe")  # this probe always fires
    assert probe["exits"] == 6 and probe["mean_reasoning_tokens"] < report["baseline"]["mean_reasoning_tokens"]
    assert report["oracle"]["mean_reasoning_tokens"] <= report["baseline"]["mean_reasoning_tokens"]
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "report.json").read_text())["best_at_no_loss"] == report["best_at_no_loss"]

    lines = (out / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 1 + len(SETTINGS) - 1  # every run kept, the refused one not
    assert run()["baseline"] == report["baseline"]  # a rerun resumes from runs.jsonl
    assert (out / "runs.jsonl").read_text().splitlines() == lines


@pytest.mark.slow
def test_a_second_probe_is_reported_beside_the_first_on_the_same_problems_and_seeds(server, tmp_path):
    """`--compare-probe`: here the second server is the same one, so its rows must equal the probe's own."""
    problems = [ProblemRecord(p.question, str(p.answer)) for p in generate_splits({"bench": 4}, seed=5)["bench"]]
    sampling = {"seed": 0, "temperature": 0.6, "top_p": 0.95, "max_tokens": 200}
    out, probe = tmp_path / "savings", Setting("probe", "threshold=0.5", {"rule": "probe", "threshold": 0.5})
    args = (server.base_url + "/v1", server.api_key, problems, out, sampling, 4)
    report = asyncio.run(run_benchmark(*args, "synthetic", settings=[probe, ORACLE]))
    compared = [Setting(COMPARED, "threshold=0.5", probe.early_exit)]
    report = asyncio.run(add_compared_probe(*args, report, settings=compared))
    rows = {row["name"]: row for row in report["policies"]}
    for field in ("accuracy", "mean_reasoning_tokens", "exits", "harms", "tokens_saved_pct"):
        assert rows[COMPARED][field] == rows["probe"][field]
    compared_run = report["compared_probe"]
    assert compared_run["served"]["id"] and compared_run["baseline_accuracy"] == report["baseline"]["accuracy"]
    # The same server's reader reaches the same oracle: nothing lies beyond its reach.
    assert compared_run["oracle_tokens_saved_pct"] == report["oracle"]["tokens_saved_pct"]
    assert compared_run["oracle_share_beyond_its_reach"] in (
        (0.0,) if report["oracle"]["tokens_saved_pct"] > 0 else (None,)
    )
    assert (
        json.loads((out / "report.json").read_text())["compared_probe"]["best_at_no_loss"]["param"] == "threshold=0.5"
    )
    assert {s.param for s in compared_settings()} >= {"default", "threshold=0.5", "max_risk=0.005"}
