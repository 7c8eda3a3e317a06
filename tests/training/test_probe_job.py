"""`probexit train probe` end to end on the real CPU engine: the command, its files, resume, and the hidden
states it trains on (they must be the model's own last-layer states at exactly the boundaries)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from probexit.probes.boundary import BoundaryPolicy, BoundaryPolicyConfig
from probexit.probes.fingerprint import model_identity
from probexit.probes.probe import Probe
from probexit.training.tinyworld.problems import write_jsonl
from tests.conftest import uncertain_problems

pytestmark = pytest.mark.slow
ENGINE_FLAGS = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "1024"]


def write_problems(path: Path, n: int, seed: int) -> None:
    write_jsonl(uncertain_problems(n, seed), path)


def train_probe(model_dir: Path, problems: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "probexit.cli",
            "train",
            "probe",
            "--model",
            str(model_dir),
            "--problems",
            str(problems),
            "--out",
            str(out),
            "--samples-per-problem",
            "2",
            "--max-tokens",
            "400",
            "--quick",
            *ENGINE_FLAGS,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def job(test_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("probe_job")
    problems = root / "problems.jsonl"
    write_problems(problems, 60, seed=11)
    done = train_probe(test_model_dir, problems, root / "out")
    assert done.returncode == 0, done.stderr[-3000:]
    return root, problems, done


def test_the_command_writes_a_probe_the_server_accepts(job, test_model_dir):
    root, _, _ = job
    metrics = json.loads((root / "out" / "metrics.json").read_text())
    for key in ("roc_auc", "ece", "brier", "n_train", "n_test", "positive_rate", "baselines", "calibration"):
        assert key in metrics
    assert metrics["n_train"] > 0 and metrics["n_test"] > 0 and 0.0 <= metrics["roc_auc"] <= 1.0
    assert set(metrics["baselines"]) >= {
        "min_logprob_auc",
        "mean_logprob_auc",
        "end_of_thinking_prob_auc",
        "text_features_auc",
    }
    probe = Probe.load(root / "out" / "probe")
    probe.check_compatible(model_identity(test_model_dir))  # the server's own start-up check
    assert [p.max_risk for p in probe.config.calibration] == sorted(p.max_risk for p in probe.config.calibration)
    assert (root / "out" / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_a_rerun_resumes_from_the_cached_traces(job, test_model_dir):
    root, problems, _ = job
    chunks = sorted((root / "out" / "traces").glob("chunk_*.pt"))
    stamps = [c.stat().st_mtime_ns for c in chunks]
    again = train_probe(test_model_dir, problems, root / "out")
    assert again.returncode == 0, again.stderr[-3000:]
    assert [c.stat().st_mtime_ns for c in chunks] == stamps  # nothing sampled again
    # another boundary policy records other boundaries: it would not find these chunks its own
    key = json.loads((root / "out" / "traces" / "key.json").read_text())
    assert key["boundaries"] == json.loads(json.dumps(BoundaryPolicyConfig().to_json()))


def test_trained_on_hidden_states_are_the_models_own_at_the_boundaries(job, test_model_dir, reference_model):
    from transformers import AutoTokenizer

    root, _, _ = job
    traces = [
        r
        for chunk in sorted((root / "out" / "traces").glob("chunk_*.pt"))
        for r in torch.load(chunk, weights_only=False)
    ][:6]
    policy = BoundaryPolicy(BoundaryPolicyConfig(), AutoTokenizer.from_pretrained(test_model_dir))
    checked = 0
    for trace in traces:
        offline = policy.segment(trace.prompt_ids, trace.token_ids)  # the shared policy, on the finished trace
        assert [b.token_index for b in trace.boundaries] == [b.token_index for b in offline]
        if not trace.boundaries:
            continue
        ids = torch.tensor([trace.prompt_ids + trace.token_ids])
        with torch.no_grad():
            states = reference_model(ids, output_hidden_states=True).hidden_states[-1][0]
        for boundary in trace.boundaries:
            expected = states[len(trace.prompt_ids) + boundary.token_index]
            # stored in fp16: compare at fp16's precision
            torch.testing.assert_close(boundary.hidden.float(), expected, rtol=2e-3, atol=2e-3)
            checked += 1
    assert checked > 0


def test_a_malformed_problem_file_is_one_line(tmp_path, test_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "What is 1 + 1?", "answer": "2"}\nnot json\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "probexit.cli",
            "train",
            "probe",
            "--model",
            str(test_model_dir),
            "--problems",
            str(bad),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "bad.jsonl" in done.stderr and "Traceback" not in done.stderr


def test_forced_labels_on_paragraph_boundaries(test_model_dir, tmp_path_factory, reference_model):
    """`--boundaries paragraph --labels forced`: every paragraph break is a boundary, labelled with the answer the
    model writes when its thinking is ended there; those answers are the model's own greedy continuations."""
    from transformers import AutoTokenizer

    from probexit.probes.answers import final_answer
    from probexit.training.forced_answers import forced_prefix

    root = tmp_path_factory.mktemp("forced")
    problems = root / "problems.jsonl"
    write_problems(problems, 40, seed=12)
    flags = ["--boundaries", "paragraph", "--labels", "forced", "--forced-answer-tokens", "24"]
    done = train_probe(test_model_dir, problems, root / "out", *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((root / "out" / "metrics.json").read_text())
    assert metrics["boundaries"] == "paragraph" and metrics["labels"] == "forced"
    cost = metrics["forced_labels_cost"]
    assert cost["boundaries"] == metrics["label_agreement"]["boundaries"] > 0 and cost["seconds_per_boundary"] > 0
    reach = metrics["oracle_reach"]
    assert reach["thinking_tokens"] > 0 and 0 <= reach["saved_reader"] <= 1 and 0 <= reach["saved_forced"] <= 1
    config = Probe.load(root / "out" / "probe").config
    assert (config.boundary_policy.mode, config.labels) == ("paragraph", "forced")

    tokenizer = AutoTokenizer.from_pretrained(test_model_dir)
    traces = torch.load(sorted((root / "out" / "traces").glob("chunk_*.pt"))[0], weights_only=False)
    forced = json.loads(sorted((root / "out" / "forced").glob("chunk_*.json"))[0].read_text())["answers"]
    policy = BoundaryPolicy(BoundaryPolicyConfig(mode="paragraph"), tokenizer)
    checked = agreed = 0
    for trace, answers in list(zip(traces, forced))[:4]:
        assert len(answers) == len(trace.boundaries) == len(policy.segment(trace.prompt_ids, trace.token_ids))
        for boundary, answer in list(zip(trace.boundaries, answers))[:3]:
            prefix = torch.tensor([forced_prefix(trace, boundary.token_index, policy.think_end_id)])
            with torch.no_grad():
                out = reference_model.generate(prefix, max_new_tokens=24, do_sample=False)
            text = tokenizer.decode(out[0, prefix.shape[1] :], skip_special_tokens=True)
            checked += 1
            agreed += final_answer(text) == answer
    assert checked >= 6 and agreed >= checked - 1  # greedy in fp32 on two engines: a near-tie may differ

    # A rerun reads every answer from the cache and still reports what labelling them cost.
    again = train_probe(test_model_dir, problems, root / "out", *flags)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((root / "out" / "metrics.json").read_text())
    assert rerun["forced_labels_cost"] == cost
    # ... and the job's whole time: what the cached traces and answers took, and this run's fit.
    assert rerun["wall_s"] - rerun["wall_s_this_run"] >= cost["seconds"] > 0


def test_forced_labels_need_the_thinking_markers_in_one_line(tmp_path, test_model_dir):
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"question": "What is 1 + 1?", "answer": "2"}\n')
    done = train_probe(test_model_dir, problems, tmp_path / "out", "--labels", "forced", "--think-end", "</nope>")
    assert done.returncode != 0 and not (tmp_path / "out").exists()
    assert done.stderr.strip().count("\n") == 0 and "</nope>" in done.stderr and "Traceback" not in done.stderr
