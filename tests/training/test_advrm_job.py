"""`probexit train advrm` end to end on the tiny-world policy, every stage at its smallest (one or two steps
each, through the real vLLM engine and TRL's trainers), driven through the command line: metrics.json
complete, the served folder loads, the plot exists, a rerun skips every stage, and other settings in the
same folder are one clear error. Bad input is a one-line error before any model loads (fast)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest

from probexit.cli.main import main
from probexit.rewards.ensemble import RewardEnsemble
from probexit.training.tinyworld.problems import write_jsonl
from tests.conftest import uncertain_problems

HEADLINE = (  # the fields the docs and the command's summary quote
    "attack_success_before",
    "attack_success_after",
    "preference_accuracy_before",
    "preference_accuracy_after",
    "hacking_step_standard",
    "hacking_step_advrm",
    "n_adversarial",
    "wall_s",
)
TINY_FLAGS = [
    "--train-questions",
    "10",
    "--eval-questions",
    "8",
    "--samples-per-question",
    "4",
    "--max-tokens",
    "256",
    "--rounds",
    "1",
    "--max-adversarial",
    "20",
    "--rm-ensemble-size",
    "3",
    "--rm-epochs",
    "1",
    "--rm-batch-size",
    "8",
    "--attack-steps",
    "2",
    "--attack-questions-per-step",
    "2",
    "--attack-num-generations",
    "2",
    "--attack-max-completion-length",
    "96",
    "--attack-eval-samples",
    "1",
    "--rlhf-steps",
    "2",
    "--rlhf-questions-per-step",
    "2",
    "--rlhf-num-generations",
    "2",
    "--rlhf-max-completion-length",
    "96",
    "--rlhf-window",
    "1",
    "--rlhf-eval-every",
    "1",
    "--rlhf-eval-questions",
    "3",
    "--rlhf-eval-samples",
    "2",
    "--dtype",
    "float32",
    "--enforce-eager",
    "--max-model-len",
    "1024",
    "--engine-arg",
    "max_num_seqs=32",
]


def command(model, folder, *extra) -> list[str]:
    return [
        "train",
        "advrm",
        "--policy",
        str(model),
        "--problems",
        str(folder / "train.jsonl"),
        "--eval-problems",
        str(folder / "validation.jsonl"),
        "--out",
        str(folder / "out"),
        *TINY_FLAGS,
        *extra,
    ]


# -- bad input: one line, exit 2, before anything heavy ------------------------------------------------------------
@pytest.fixture
def files(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "train.jsonl").write_text('{"question": "What is 1 + 2?", "answer": "3"}\n')
    (tmp_path / "validation.jsonl").write_text('{"question": "What is 2 + 2?", "answer": "4"}\n')
    return tmp_path


@pytest.mark.parametrize(
    "change, message",
    [
        pytest.param(lambda f: (f / "train.jsonl").unlink(), "does not exist", id="no-problem-file"),
        pytest.param(
            lambda f: (f / "validation.jsonl").write_text('{"question": "What is 2 + 2?"}\n'),
            "no 'answer'",
            id="no-gold-answers",
        ),
        pytest.param(lambda f: (f / "train.jsonl").write_text("{nope\n"), "not a JSON object", id="bad-json"),
        pytest.param(lambda f: (f / "m" / "config.json").unlink(), "not a model folder", id="no-model"),
    ],
)
def test_bad_files_are_one_line_errors(files, capsys, change, message):
    change(files)
    assert main(command(files / "m", files)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("probexit: error:") and message in err


@pytest.mark.parametrize(
    "flags, message",
    [
        pytest.param(["--rounds", "-1"], "rounds", id="rounds"),
        pytest.param(["--samples-per-question", "1"], "right and a wrong", id="samples"),
        pytest.param(["--rm-ensemble-subset", "0"], "ensemble_subset", id="subset"),
        pytest.param(["--attack-num-generations", "1"], "num_generations", id="generations"),
        pytest.param(["--rlhf-margin", "2"], "margin", id="margin"),
        pytest.param(["--rlhf-eval-samples", "0"], "eval_samples", id="held-out-samples"),
        pytest.param(
            ["--rm-backbone", "/nonexistent"], "reward-model backbone /nonexistent: not a model folder", id="backbone"
        ),
        pytest.param(
            ["--rm-head", "mean"], "unknown reward head 'mean' (known: last-token, token-surprise)", id="head"
        ),
        pytest.param(
            ["--rm-ensemble-backbone", "/nonexistent"],
            "ensemble backbone /nonexistent: not a model folder",
            id="ensemble-backbone",
        ),
        pytest.param(
            ["--rm-head", "last-token", "--rm-ensemble-backbone", "/x"],
            "read by token-surprise heads only",
            id="ensemble-backbone-head",
        ),
        pytest.param(["--rm-epochs", "-1"], "must not be negative", id="epochs"),
    ],
)
def test_settings_that_cannot_work_are_one_line_errors(files, capsys, flags, message):
    assert main(command(files / "m", files, *flags)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_flag_of_the_wrong_type_is_argparses_usage_error(files, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(command(files / "m", files, "--attack-steps", "many"))
    assert exit_.value.code == 2 and "--attack-steps: invalid int value" in capsys.readouterr().err


# -- the whole job, tiny -------------------------------------------------------------------------------------------
# What each call of the fixture's run logged and wrote (it is built in three calls, below).
CALLS: list[dict] = []


@pytest.fixture(scope="module")
def run(test_model_dir, tmp_path_factory):
    """The whole job, built as a user extends a run: round 0 alone, then one more round, then the RLHF runs.
    The tests below check the end state, so an extended run must be a whole one."""
    folder = tmp_path_factory.mktemp("advrm")
    problems = uncertain_problems(18, seed=3)
    write_jsonl(problems[:10], folder / "train.jsonl")
    write_jsonl(problems[10:], folder / "validation.jsonl")
    for extra in (["--rounds", "0", "--no-run-rlhf"], ["--no-run-rlhf"], []):
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert main(command(test_model_dir, folder, *extra)) == 0
        CALLS.append(
            {
                "log": [line for line in printed.getvalue().splitlines() if line.startswith("advrm:")],
                "metrics": json.loads((folder / "out" / "metrics.json").read_text()),
            }
        )
    return CALLS[-1]["metrics"], folder, test_model_dir


@pytest.mark.slow
def test_a_run_extended_by_a_round_and_the_rlhf_runs_redoes_nothing(run):
    first, second, third = CALLS
    assert first["metrics"]["attack_success_after"] == [] and first["metrics"]["rlhf"] == {}
    assert "advrm: round0_reward: done already, skipped" in second["log"]
    assert "advrm: round0_adversarial ..." in second["log"] and "advrm: round1_attack ..." in second["log"]
    assert [r["round"] for r in second["metrics"]["attack_success_after"]] == [1]
    assert not any(line.startswith("advrm: rlhf") for line in second["log"])
    ran = [line for line in third["log"] if line.endswith(" ...")]
    assert ran == ["advrm: rlhf_standard ...", "advrm: rlhf_advrm ..."]
    assert third["metrics"]["rounds"] == second["metrics"]["rounds"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags, message",
    [
        pytest.param(["--rounds", "0"], "a rerun may add rounds, not drop them", id="fewer-rounds"),
        pytest.param(["--rounds", "2"], "used round 1's model: more rounds need a new --out", id="rounds-after-rlhf"),
        pytest.param(["--attack-steps", "3"], "other settings", id="other-settings"),
        pytest.param(["--rlhf-beta", "0.5"], "other --rlhf-* settings", id="other-rlhf-settings"),
        pytest.param(["--rlhf-steps", "1"], "may add steps, not drop them", id="fewer-rlhf-steps"),
    ],
)
def test_a_rerun_that_would_mix_two_runs_is_refused(run, capsys, flags, message):
    _, folder, model = run
    assert main(command(model, folder, *flags)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.slow
def test_metrics_hold_the_headline_fields(run):
    metrics, _, _ = run
    assert all(name in metrics for name in HEADLINE)
    before, after = metrics["attack_success_before"], metrics["attack_success_after"]
    assert set(before) == {"round", "standard", "strict", "n"} and before["n"] == 8
    assert [r["round"] for r in after] == [1]
    for rate in [before] + after:
        assert 0 <= rate["strict"] <= rate["standard"] <= 1
    assert 0 <= metrics["preference_accuracy_before"] <= 1 and 0 <= metrics["preference_accuracy_after"] <= 1
    assert metrics["rlhf_steps"] == 2 and metrics["n_adversarial"] >= 0
    for name in ("standard", "advrm"):
        assert [row["step"] for row in metrics["rlhf"][name]["steps"]] == [1, 2]
        assert all(0 <= row["gold"] <= 1 for row in metrics["rlhf"][name]["steps"])
        held_out = metrics["rlhf"][name]["held_out"]  # before the first step, then after each
        assert [(row["step"], row["n"]) for row in held_out] == [(0, 6), (1, 6), (2, 6)]
        assert metrics["rlhf"][name]["hacking"]["curve"] == "held_out"
    assert "goals" not in metrics and metrics["preference_bias"] is None
    assert metrics["rounds"][0]["preference_data"]["target"]["pairs"] > 0
    assert metrics["wall_s"] > 0 and metrics["reward_size_mb"] > 0
    assert 0 <= metrics["cut_answer_share"] <= 1
    cut_warned = any("cut at --max-tokens 256" in w for w in metrics["warnings"])
    assert cut_warned is (metrics["cut_answer_share"] > 0.05)


@pytest.mark.slow
def test_every_stage_left_its_outputs(run):
    _, folder, _ = run
    out = folder / "out"
    for k in (0, 1):
        assert (out / "rounds" / str(k) / "attack" / "policy" / "config.json").is_file()
        assert (out / "rounds" / str(k) / "attack" / "eval_samples.jsonl").is_file()
    assert (out / "rounds" / "0" / "adversarial_pairs.jsonl").is_file()
    assert (out / "rlhf.png").stat().st_size > 1000
    assert sorted(p.stem for p in (out / "work").glob("round*.json")) == [
        "round0_adversarial",
        "round0_attack",
        "round0_reward",
        "round1_attack",
        "round1_reward",
    ]


@pytest.mark.slow
def test_the_served_folder_is_the_last_rounds_and_loads(run):
    _, folder, _ = run
    ensemble = RewardEnsemble.load(folder / "out" / "reward")
    assert ensemble.manifest.name == "advrm"
    assert ensemble.manifest.notes["round"] == 1 and len(ensemble.manifest.ensemble) == 3
    assert not list((folder / "out" / "reward").rglob("done.json"))
    score = ensemble.score(
        [
            [
                {"role": "user", "content": "What is 1 + 2 + 3?"},
                {"role": "assistant", "content": "</think>\n\nThe answer is \\boxed{6}."},
            ]
        ]
    )[0]
    assert score.tokens > 10


@pytest.mark.slow
def test_a_rerun_skips_every_stage(run, capsys):
    metrics, folder, model = run
    capsys.readouterr()
    assert main(command(model, folder)) == 0
    logged = [line for line in capsys.readouterr().out.splitlines() if line.startswith("advrm:")]
    assert logged and all(line.endswith("done already, skipped") for line in logged[:-2])
    assert logged[-2].startswith("advrm: export: round 1's reward models ->")
    again = json.loads((folder / "out" / "metrics.json").read_text())
    assert {k: v for k, v in again.items() if k != "wall_s_this_session"} == {
        k: v for k, v in metrics.items() if k != "wall_s_this_session"
    }


def rerun(model, folder, *extra) -> tuple[list[str], str]:
    """Run the job again in `folder`: the stages it started or extended, and all it printed."""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(command(model, folder, *extra)) == 0
    lines = printed.getvalue().splitlines()
    return [line for line in lines if line.startswith("advrm:") and "..." in line], printed.getvalue()


@pytest.mark.slow
def test_more_rlhf_steps_extend_both_runs_from_their_checkpoints(run, tmp_path):
    metrics, folder, model = run
    copy = tmp_path / "extended"
    shutil.copytree(folder, copy)
    started, printed = rerun(model, copy, "--rlhf-steps", "3")
    assert started == ["advrm: rlhf_standard: extending ...", "advrm: rlhf_advrm: extending ..."]
    assert "resuming from" in printed and "checkpoint-2" in printed
    extended = json.loads((copy / "out" / "metrics.json").read_text())
    assert extended["rlhf_steps"] == 3 and extended["rounds"] == metrics["rounds"]
    for name in ("standard", "advrm"):
        run_then, run_now = metrics["rlhf"][name], extended["rlhf"][name]
        assert [row["step"] for row in run_now["steps"]] == [1, 2, 3]
        assert run_now["steps"][:2] == run_then["steps"] and run_now["held_out"][:3] == run_then["held_out"]
        assert [row["step"] for row in run_now["held_out"]] == [0, 1, 2, 3]
        assert run_now["hacking"]["run_steps"] == 3
    assert extended["stage_seconds"]["rlhf_advrm"] > metrics["stage_seconds"]["rlhf_advrm"]


@pytest.mark.slow
def test_more_rlhf_steps_without_run_rlhf_extend_nothing(run, tmp_path):
    metrics, folder, model = run
    copy = tmp_path / "reported"
    shutil.copytree(folder, copy)
    assert rerun(model, copy, "--rlhf-steps", "3", "--no-run-rlhf")[0] == []
    reported = json.loads((copy / "out" / "metrics.json").read_text())
    assert reported["rlhf_steps"] == metrics["rlhf_steps"] == 2
    assert reported["rlhf"] == metrics["rlhf"]


@pytest.mark.slow
def test_a_run_made_before_a_setting_existed_resumes_with_its_default(run, tmp_path):
    metrics, folder, model = run
    copy = tmp_path / "older"
    shutil.copytree(folder, copy)
    stored = copy / "out" / "work" / "run_config.json"
    settings = json.loads(stored.read_text())
    del settings["config"]["attack"]["ensemble_clip"]
    stored.write_text(json.dumps(settings))
    assert rerun(model, copy)[0] == []
    assert main(command(model, copy, "--attack-ensemble-clip", "-2")) == 2  # another objective: refused
