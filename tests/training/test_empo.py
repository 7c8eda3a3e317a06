"""EMPO: the rewards and the entropy filter (tables), the collapse guard, the config, and the job end to end
on the tiny-world policy: gold-free, parameters move, metrics.json complete, resume, vLLM evaluation."""

from __future__ import annotations

import doctest
import json
import math

import pytest

from probexit.probes.equivalence import ExactEquivalence, MathEquivalence
from probexit.training import empo, empo_eval
from probexit.training.empo import (
    EMPOConfig,
    RewardStats,
    collapse_reason,
    gold_reward,
    score_group,
    semantic_cluster_reward,
)

METRIC_FIELDS = (
    "accuracy_before",
    "accuracy_after",
    "accuracy_supervised_grpo",
    "entropy_before",
    "entropy_after",
    "format_valid_after",
    "steps",
    "wall_s",
)


def done(answer) -> str:
    """A well-formed tiny-world completion ending in `answer`."""
    return f"Add 1 and 2.\nSo the answer is {answer}.\n\n</think>\n\nThe answer is \\boxed{{{answer}}}."


@pytest.mark.parametrize("name", ["empo", "empo_eval", "empo_job"])
def test_doctests(name):
    import importlib

    module = importlib.import_module(f"probexit.training.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- the EMPO reward ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "completions, expected",
    [
        pytest.param([done(2), done(2), done(3), done(4)], [0.5, 0.5, 0.25, 0.25], id="shares"),
        pytest.param([done("1/2"), done("0.5"), done(3), done(3)], [0.5, 0.5, 0.5, 0.5], id="math-equivalent-merge"),
        pytest.param(
            [done(5), done(5), done(5), "So the answer is 5.\n\n"], [0.75, 0.75, 0.75, 0.0], id="no-end-of-thinking"
        ),
        pytest.param(
            [done(5), done(5), done(6), "</think> x </think> \\boxed{5}"], [0.5, 0.5, 0.25, 0.0], id="marker-twice"
        ),
        pytest.param(
            [done(5), done(5), done(6), "\\boxed{5} </think> no box"], [0.5, 0.5, 0.25, 0.0], id="box-before-marker"
        ),
        pytest.param([done(1), done(2), done(3), done(4)], [0.0] * 4, id="all-differ-skipped"),
        pytest.param([done(7)] * 4, [0.0] * 4, id="all-agree-skipped"),
        pytest.param(["cut off", "cut off", "cut off", "cut off"], [0.0] * 4, id="all-invalid-skipped"),
        pytest.param([done(1), done(2), done(3), "cut off"], [0.0] * 4, id="invalid-counts-as-own-cluster"),
    ],
)
def test_semantic_cluster_reward(completions, expected):
    assert semantic_cluster_reward(completions, num_generations=4) == expected


@pytest.mark.parametrize(
    "min_ratio, max_ratio, expected",
    [
        pytest.param(0.0, 1.0, [0.5, 0.5, 0.25, 0.25], id="defaults-keep"),
        pytest.param(0.0, 0.7, [0.0] * 4, id="high-threshold-skips"),  # H = 1.04 nats = 0.75 log 4
        pytest.param(0.8, 1.0, [0.0] * 4, id="low-threshold-skips"),
        pytest.param(0.7, 0.8, [0.5, 0.5, 0.25, 0.25], id="inside-band"),
    ],
)
def test_entropy_thresholds_are_configurable(min_ratio, max_ratio, expected):
    completions = [done(2), done(2), done(3), done(4)]
    assert (
        semantic_cluster_reward(
            completions, num_generations=4, min_entropy_ratio=min_ratio, max_entropy_ratio=max_ratio
        )
        == expected
    )


def test_groups_are_scored_apart_and_statistics_logged():
    stats, logged = RewardStats(), {}
    prompts = ["p1"] * 4 + ["p2"] * 4
    completions = [done(2), done(2), done(2), done(3)] + [done(1), done(2), done(3), done(4)]
    rewards = semantic_cluster_reward(
        completions,
        prompts,
        num_generations=4,
        stats=stats,
        log_metric=lambda name, value: logged.__setitem__(name, value),
    )
    assert rewards == [0.75, 0.75, 0.75, 0.25] + [0.0] * 4
    assert logged["empo/kept"] == 0.5 and logged["empo/skipped_high_entropy"] == 0.5
    assert logged["empo/skipped_low_entropy"] == 0.0 and logged["empo/format_valid"] == 1.0
    assert stats.history[-1]["majorities"] == ["2", "1"]


def test_a_group_spanning_processes_is_clustered_whole(monkeypatch):
    """Process 1 of 2 holds the second half of a group: it clusters the gathered group, returns its slice."""
    everything = [("p", done(2)), ("p", done(2)), ("p", done(2)), ("p", done(9))]
    gathered = [(repr(key), empo.well_formed_answer(text)) for key, text in everything]
    monkeypatch.setattr(empo, "_gather", lambda local: (gathered, 2))
    assert semantic_cluster_reward([done(2), done(9)], ["p", "p"], num_generations=4) == [0.75, 0.25]


@pytest.mark.parametrize(
    "prompts, completions, kwargs, message",
    [
        pytest.param(["a", "a", "b", "b"], [done(1)] * 4, {}, "mixes prompts", id="mixed-group"),
        pytest.param(None, [done(1)] * 3, {}, "whole groups", id="partial-group"),
        pytest.param(None, [done(1)] * 4, {"answer": ["1"] * 4}, "gold 'answer'", id="gold-answer-refused"),
    ],
)
def test_reward_refuses_malformed_batches(prompts, completions, kwargs, message):
    with pytest.raises(ValueError, match=message):
        semantic_cluster_reward(completions, prompts, num_generations=4, **kwargs)


def test_conversational_completions_are_read():
    conversation = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
    rewards = semantic_cluster_reward([conversation(done(3))] * 3 + [conversation(done(4))], num_generations=4)
    assert rewards == [0.75, 0.75, 0.75, 0.25]


def test_judge_style_equivalence_is_pluggable():
    class FirstItem:
        name = "first-item"

        def same(self, answer, reference):
            return answer.split(",")[0] == reference.split(",")[0]

    completions = [done("Paris, France"), done("Paris"), done("Lyon"), done("lyon")]
    assert semantic_cluster_reward(completions, num_generations=4, equivalence=FirstItem()) == [0.5, 0.5, 0.25, 0.25]
    assert semantic_cluster_reward(completions, num_generations=4, equivalence=ExactEquivalence()) == [
        0.25,
        0.25,
        0.5,
        0.5,
    ]


@pytest.mark.parametrize(
    "completion, gold, expected",
    [
        pytest.param(done(4), "4", 1.0, id="right"),
        pytest.param(done("4.0"), "4", 1.0, id="math-equal"),
        pytest.param(done(5), "4", 0.0, id="wrong"),
        pytest.param("So the answer is 4.\n\n", "4", 0.0, id="no-final-answer"),
    ],
)
def test_gold_reward(completion, gold, expected):
    assert gold_reward([completion], answer=[gold]) == [expected]


# -- the collapse guard ------------------------------------------------------------------------------------
def feed(stats: RewardStats, groups: list[list[str | None]]) -> None:
    stats.record([score_group(answers, MathEquivalence()) for answers in groups])


@pytest.mark.parametrize(
    "groups, reason",
    [
        pytest.param([["1", "1", "2", "3"], ["4", "4", "5", "4"]], None, id="healthy"),
        pytest.param([[None, None, None, "3"], ["4", None, None, None]], "format broke", id="format-broke"),
        pytest.param([["0", "0", "0", "0"], ["0", "0", "0", "0"]], "one answer for all questions", id="same-answer"),
    ],
)
def test_collapse_rule(groups, reason):
    stats, config = RewardStats(), EMPOConfig(collapse_window=3, collapse_min_answer_diversity=0.2)
    for _ in range(3):
        feed(stats, groups)
    found = collapse_reason(stats.window(config.collapse_window), config)
    assert (found is None) if reason is None else (reason in found)


def test_guard_stops_training_naming_the_step():
    from transformers import TrainerControl, TrainerState

    from probexit.training.empo_job import CollapseGuard

    stats, config = RewardStats(), EMPOConfig(collapse_window=2)
    guard, control, state = CollapseGuard(stats, config), TrainerControl(), TrainerState()
    feed(stats, [[None] * 4])
    state.global_step = 1
    assert not guard.on_step_end(None, state, control).should_training_stop  # window not full yet
    feed(stats, [[None] * 4])
    state.global_step = 2
    assert guard.on_step_end(None, state, control).should_training_stop
    assert guard.step == 2 and guard.reason.startswith("format broke")


# -- config ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param({"num_generations": 1}, "at least 2 answers", id="one-generation"),
        pytest.param({"min_entropy_ratio": 0.5, "max_entropy_ratio": 0.5}, "entropy ratios", id="empty-band"),
        pytest.param({"max_entropy_ratio": 1.5}, "entropy ratios", id="ratio-above-one"),
        pytest.param({"equivalence": "judge"}, "judge_url", id="judge-without-endpoint"),
        pytest.param({"equivalence": "fuzzy"}, "unknown equivalence", id="unknown-equivalence"),
        pytest.param({"steps": 0}, "steps must be at least 1", id="no-steps"),
        pytest.param({"collapse_min_format_valid": 2.0}, "share in", id="share-above-one"),
    ],
)
def test_config_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EMPOConfig(**kwargs)


def test_eval_config_refuses_one_sample():
    with pytest.raises(ValueError, match="at least 2 answers"):
        empo_eval.EvalConfig(samples=1)


def test_gain_ratio_of_greedy_and_sampled_accuracy():
    from probexit.training.empo_job import _gain_ratio, summary
    from probexit.training.grpo import TrainedPolicy

    card = lambda greedy, sampled: {"accuracy_greedy": greedy, "accuracy_sampled": sampled}  # noqa: E731
    before, after, baseline = card(0.4, 0.6), card(0.5, 0.9), card(0.6, 0.7)
    assert _gain_ratio(before, after, baseline, "accuracy_greedy") == pytest.approx(0.5)
    assert _gain_ratio(before, after, baseline, "accuracy_sampled") == pytest.approx(3.0)
    assert _gain_ratio(before, after, None, "accuracy_greedy") is None
    assert _gain_ratio(before, after, card(0.4, 0.6), "accuracy_sampled") is None  # the baseline gained nothing
    scored = {"semantic_entropy": 0.5, "format_valid": 1.0}
    trained = TrainedPolicy(policy_dir="p", steps=1, train_s=1.0, last_log={})
    metrics = summary({**before, **scored}, {**after, **scored}, {**baseline, **scored}, trained, None, "trained")
    assert metrics["gain_vs_supervised"] == pytest.approx(0.5)
    assert metrics["gain_vs_supervised_sampled"] == pytest.approx(3.0)


# -- the CLI -----------------------------------------------------------------------------------------------
def test_cli_errors_are_one_line(tmp_path, capsys):
    from probexit.cli.main import main

    assert (
        main(
            [
                "train",
                "empo",
                "--model",
                str(tmp_path),
                "--problems",
                str(tmp_path / "none.jsonl"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "p.jsonl").write_text('{"question": "What is 1 + 2?"}\n')
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert (
        main(
            [
                "train",
                "empo",
                "--model",
                str(tmp_path / "m"),
                "--problems",
                str(tmp_path / "p.jsonl"),
                "--out",
                str(tmp_path / "out"),
                "--num-generations",
                "1",
            ]
        )
        == 2
    )
    assert "at least 2 answers" in capsys.readouterr().err


# -- the job on the tiny-world policy ----------------------------------------------------------------------
@pytest.fixture
def problem_file(test_model_dir, tmp_path):
    """Tiny-world questions without answers (generated, so no other file is needed)."""
    import random

    from probexit.training.tinyworld.problems import random_problem

    rng = random.Random(0)
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps({"question": random_problem(rng).question}) + "\n" for _ in range(40)))
    return path


def tiny_job(model_dir, problems_path, out, steps, **overrides):
    from probexit.training.empo_job import EMPOJob
    from probexit.training.problem_files import load_problems

    # Sampled hot and long enough to finish, so the groups disagree: a group whose answers all agree carries no
    # gradient, and the embedded policy agrees with itself at the job's default temperature.
    settings = dict(
        num_generations=4,
        questions_per_step=4,
        save_steps=1,
        learning_rate=1e-4,
        max_completion_length=512,
        temperature=1.2,
    )
    config = EMPOConfig(steps=steps, **{**settings, **overrides})
    return EMPOJob(model_dir, load_problems(problems_path, require_answers=False), out, config, log=lambda line: None)


@pytest.mark.slow
def test_gold_free_job_trains_and_writes_every_metric(test_model_dir, problem_file, tmp_path, monkeypatch):
    """No answer in the file, none in any reward call; the policy moves; metrics.json has every field."""
    import torch
    from safetensors.torch import load_file

    from probexit.training import empo_job

    seen_columns = []

    def spy(completions, prompts=None, **kwargs):
        seen_columns.append(set(kwargs))
        return semantic_cluster_reward(completions, prompts, **kwargs)

    spy.__name__ = "semantic_cluster_reward"
    monkeypatch.setattr(empo_job, "semantic_cluster_reward", spy)
    out = tmp_path / "run"
    metrics = tiny_job(test_model_dir, problem_file, out, steps=2).run()

    assert seen_columns and not any("answer" in columns for columns in seen_columns)
    assert all(field in metrics for field in METRIC_FIELDS)
    assert json.loads((out / "metrics.json").read_text())["steps"] == metrics["steps"] == 2
    assert metrics["supervised_grpo"].startswith("skipped") and not (out / "supervised").exists()
    before, after = load_file(test_model_dir / "model.safetensors"), load_file(out / "policy" / "model.safetensors")
    assert any(not torch.equal(before[name], after[name]) for name in before)
    assert (out / "policy" / "tokenizer.json").is_file() and (out / "policy" / "generation_config.json").is_file()


@pytest.mark.slow
def test_rerun_with_more_steps_resumes_from_the_checkpoint(test_model_dir, problem_file, tmp_path):
    out = tmp_path / "run"
    tiny_job(test_model_dir, problem_file, out, steps=1).run()
    assert (out / "checkpoints" / "checkpoint-1").is_dir()
    metrics = tiny_job(test_model_dir, problem_file, out, steps=2).run()
    assert metrics["steps"] == 2 and (out / "checkpoints" / "checkpoint-2").is_dir()
    log = json.loads((out / "train_log.json").read_text())
    assert [entry["step"] for entry in log if "train_runtime" in entry] == [2]  # one more step, not two
    with pytest.raises(ValueError, match="learning_rate differ"):
        tiny_job(test_model_dir, problem_file, out, steps=3, learning_rate=1e-3).run()


@pytest.mark.slow
def test_cli_job_with_vllm_evaluation_and_supervised_baseline(test_model_dir, tmp_path):
    """The whole command: evaluation before/after through the vLLM engine, the supervised baseline (the only
    reader of gold answers), metrics.json's headline fields filled."""
    import random

    from probexit.cli.main import main
    from probexit.training.tinyworld.problems import random_problem

    rng = random.Random(1)
    problems = [random_problem(rng) for _ in range(30)]
    train, held_out = tmp_path / "train.jsonl", tmp_path / "held_out.jsonl"
    for path, part in ((train, problems[:20]), (held_out, problems[20:])):
        path.write_text("".join(json.dumps({"question": p.question, "answer": str(p.answer)}) + "\n" for p in part))
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "empo",
                "--model",
                str(test_model_dir),
                "--problems",
                str(train),
                "--out",
                str(out),
                "--eval-problems",
                str(held_out),
                "--steps",
                "1",
                "--num-generations",
                "4",
                "--questions-per-step",
                "2",
                "--eval-samples",
                "2",
                "--eval-max-tokens",
                "256",
                "--dtype",
                "float32",
                "--enforce-eager",
                "--max-model-len",
                "1024",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(metrics[field] is not None for field in METRIC_FIELDS)
    assert metrics["supervised_grpo"] == "trained" and (out / "supervised" / "policy" / "config.json").is_file()
    assert metrics["wall_s"] == metrics["wall_s_this_run"] > 0  # a first run; a resumed one adds earlier pieces
    for name in ("before", "after", "supervised_grpo"):
        card = metrics["evaluation"][name]
        assert card["n_problems"] == 10 and 0 <= card["accuracy_sampled"] <= 1
        assert 0 <= card["semantic_entropy"] <= math.log(2) + 1e-9 and card["reasoning_tokens"] > 0
