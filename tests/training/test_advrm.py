"""Adv-RM, the parts that are plain functions: grading (gold reward), the failure-mode classifier, the
adversarial objective, attack success and example selection, the hacking rule, preference pairs, the
served uncertainty numbers, the configs and the command line. Synthetic numbers throughout; no model."""

from __future__ import annotations

import doctest
from types import SimpleNamespace

import pytest

from probexit.training import advrm, advrm_attack, advrm_rewards, advrm_rlhf
from probexit.training.advrm_attack import (
    AttackSettings,
    attack_objective,
    attack_success,
    classify_failure,
    select_adversarial,
)
from probexit.training.advrm_rewards import RewardModelSettings, Sample, preference_pairs
from probexit.training.advrm_rlhf import RLHFSettings, curve, hacking_step
from probexit.training.tinyworld import grading
from probexit.training.tinyworld.grading import format_problems, grade

END = "\n\n</think>\n\nThe answer is \\boxed{{{}}}."


def trace(*stated, boxed=None) -> str:
    """A tiny-world completion whose paragraphs state `stated` and whose box holds `boxed` (default: the last)."""
    body = "\n\n".join(f"Let me add. So the answer is {n}." for n in stated)
    return body + END.format(stated[-1] if boxed is None else boxed)


@pytest.mark.parametrize(
    "module", [grading, advrm_attack, advrm_rlhf, advrm_rewards], ids=lambda m: m.__name__.rsplit(".", 1)[-1]
)
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- grading: the gold reward -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, gold, problems",
    [
        pytest.param(trace(4), 1.0, (), id="right"),
        pytest.param(trace(3, 4), 1.0, (), id="right-after-a-wrong-paragraph"),
        pytest.param(trace(5), 0.0, (), id="wrong"),
        pytest.param(trace(5, boxed=4), 0.0, ("boxed answer differs from the thinking",), id="box-contradicts"),
        pytest.param("</think>\n\nThe answer is \\boxed{4}.", 0.0, ("no thinking",), id="no-thinking"),
        pytest.param("Let me add. So the answer is 4.", 0.0, ("no end of thinking",), id="cut-off"),
        pytest.param(trace(4) + "</think>", 0.0, ("end of thinking repeated",), id="marker-twice"),
        pytest.param(trace(4).replace("The answer is ", ""), 0.0, ("text around the final answer",), id="bare-box"),
        pytest.param(trace(4) + " Bye.", 0.0, ("text around the final answer",), id="trailing-text"),
        pytest.param(
            "I add.\n\n</think>\n\nThe answer is \\boxed{4}.",
            0.0,
            ("the thinking ends on no result",),
            id="paragraph-without-answer",
        ),
        pytest.param(
            "Okay, 2 + 2.\n\nIn my head: 2 + 2 is 4. So I get four.\n\n</think>\n\nThe answer is \\boxed{4}.",
            1.0,
            (),
            id="an-opening-and-a-result-in-words",
        ),
        pytest.param(trace(4).replace("\\boxed{4}", "4"), 0.0, ("no final answer sentence",), id="no-box"),
        pytest.param("<think>" + trace(4), 0.0, ("thinking opened again",), id="think-reopened"),
    ],
)
def test_grade(text, gold, problems):
    graded = grade(text, "4")
    assert (graded.gold, graded.problems) == (gold, problems)
    assert format_problems(text) == problems


def test_the_gold_reward_reads_conversational_completions():
    completion = [{"role": "assistant", "content": trace(4)}]
    assert grading.gold_reward([completion, trace(4)], answer=["4", "5"]) == [1.0, 0.0]


# -- failure modes ------------------------------------------------------------------------------------------------
LOOP = "2 + 2 is 4 and 4 is 2 + 2 and " * 4


@pytest.mark.parametrize(
    "text, mode",
    [
        pytest.param(trace(5), "wrong_answer", id="wrong"),
        pytest.param("</think>\n\nThe answer is \\boxed{4}.", "answer_without_thinking", id="no-thinking-right-box"),
        pytest.param("</think>\n\nThe answer is \\boxed{7}.", "answer_without_thinking", id="no-thinking-wrong-box"),
        pytest.param(
            "Hmm.\n\n</think>\n\nThe answer is \\boxed{4}.", "answer_without_thinking", id="thinking-states-nothing"
        ),
        pytest.param(trace(5, boxed=4), "boxed_contradicts_thinking", id="box-contradicts"),
        pytest.param(trace(4, 4, 4, 4), "repeated_text", id="same-paragraph-4-times"),
        pytest.param(LOOP + "So the answer is 4." + END.format(4), "repeated_text", id="loop-in-a-paragraph"),
        pytest.param("Let me add. So the answer is 4.\n\nLet me", "no_final_answer", id="cut-off"),
        pytest.param(trace(4) + " Really.", "malformed", id="trailing-text"),
    ],
)
def test_classify_failure(text, mode):
    assert mode in advrm_attack.FAILURE_MODES
    assert classify_failure(text, "4") == mode


def test_a_normal_recheck_is_not_repetition():
    """The policy re-checks with the same words (twice is normal); that is no loop."""
    assert classify_failure(trace(5, 5), "4") == "wrong_answer"


# -- the attack ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target, ensemble, expected",
    [
        pytest.param(3.0, 0.0, 3.0, id="fools-only-the-target"),
        pytest.param(3.0, 3.0, 1.5, id="fools-everyone"),
        pytest.param(0.5, -2.0, 1.0, id="below-floor-but-ensemble-low"),
        pytest.param(-1.0, -1.0, -2.5, id="below-floor"),
    ],
)
def test_attack_objective(target, ensemble, expected):
    assert attack_objective(target, ensemble, floor=1.0, lam=0.5, penalty=1.0) == pytest.approx(expected)


def test_a_clipped_ensemble_term_pays_nothing_for_text_every_model_rejects():
    scores = [SimpleNamespace(normalised=-1.0, ensemble_mean=-20.0, z=0.0)] * 2 + [
        SimpleNamespace(normalised=2.0, ensemble_mean=0.0, z=3.0)
    ]
    texts, prompts = (
        ["garbage", "more garbage", "a long, confident wrong answer"],
        [[{"role": "user", "content": "q"}]] * 3,
    )
    unbounded = advrm_attack.adversarial_reward(texts, prompts, scorer=lambda q, t: scores, floor=1.0)
    clipped = advrm_attack.adversarial_reward(texts, prompts, scorer=lambda q, t: scores, floor=1.0, ensemble_clip=-2.0)
    assert unbounded[0] > unbounded[2]  # unbounded, rejected text outscores the target's exploit
    assert clipped == [-2.0, -2.0, 2.0]


ROWS = [  # gold, target (calibrated), z
    {"question": "a", "text": "x", "gold": 0.0, "target": 2.0, "z": 3.0},  # adversarial: standard, flagged
    {"question": "a", "text": "y", "gold": 0.0, "target": 2.0, "z": 1.0},  # standard and strict
    {"question": "b", "text": "z", "gold": 1.0, "target": 2.5, "z": 3.0},  # right: no attack
    {"question": "b", "text": "w", "gold": 0.0, "target": 0.5, "z": 4.0},  # below the floor
    {"question": "a", "text": "x", "gold": 0.0, "target": 2.0, "z": 3.0},  # the first again
]


def test_attack_success_rates():
    assert attack_success(ROWS, floor=1.0, z_threshold=1.96) == {"standard": 0.6, "strict": 0.2, "n": 5}
    assert attack_success(ROWS, floor=2.2, z_threshold=1.96) == {"standard": 0.0, "strict": 0.0, "n": 5}
    assert attack_success([], floor=1.0, z_threshold=1.96)["standard"] is None


def test_adversarial_examples_are_high_reward_high_uncertainty_low_gold_and_distinct():
    kept = select_adversarial(ROWS, floor=1.0, z_threshold=1.96)
    assert [row["text"] for row in kept] == ["x"]


def test_failure_report_counts_modes_with_examples():
    rows = [
        {"failure": "repeated_text", "text": "t1"},
        {"failure": "repeated_text", "text": "t2"},
        {"failure": "wrong_answer", "text": "t3"},
    ]
    report = advrm_attack.failure_report(rows, examples=1)
    assert report == {
        "repeated_text": {"count": 2, "share": 2 / 3, "examples": ["t1"]},
        "wrong_answer": {"count": 1, "share": 1 / 3, "examples": ["t3"]},
    }


# -- the hacking rule ----------------------------------------------------------------------------------------------
def steps(gold, proxy):
    return [{"step": i + 1, "gold": g, "proxy": p} for i, (g, p) in enumerate(zip(gold, proxy))]


@pytest.mark.parametrize(
    "gold, proxy, window, expected",
    [
        pytest.param([0.5, 0.6, 0.7, 0.8, 0.6, 0.5, 0.4, 0.3], range(8), 1, 4, id="rise-then-fall"),
        pytest.param([0.5, 0.6, 0.7, 0.8, 0.8, 0.85, 0.9, 0.9], range(8), 1, None, id="never-falls"),
        pytest.param(
            [0.5, 0.6, 0.7, 0.8, 0.6, 0.5, 0.4, 0.3], [0, 1, 2, 3, 2, 1, 0, -1], 1, None, id="proxy-falls-too"
        ),
        pytest.param([0.5, 0.6, 0.7, 0.8, 0.6, 0.8, 0.8, 0.8], range(8), 1, None, id="dip-recovers"),
        pytest.param([0.5, 0.7, 0.5, 0.7, 0.5, 0.7, 0.5, 0.7], range(8), 1, None, id="noise-within-margin-of-itself"),
        pytest.param([0.4, 0.6, 0.8, 0.8, 0.8, 0.8, 0.4, 0.2, 0.2, 0.1, 0.1, 0.1], range(12), 3, 6, id="smoothed"),
    ],
)
def test_hacking_step(gold, proxy, window, expected):
    found = hacking_step(steps(gold, list(proxy)), window=window, margin=0.1)
    assert found["step"] == expected
    assert found["run_steps"] == len(gold)


def test_a_step_made_again_after_a_resume_counts_once():
    rows = [
        {"step": 1, "gold": 0.1, "proxy": 0},
        {"step": 2, "gold": 0.9, "proxy": 1},
        {"step": 2, "gold": 0.5, "proxy": 2},
        {"step": 3, "gold": 0.6, "proxy": 3},
    ]
    assert [row["gold"] for row in curve(rows)] == [0.1, 0.5, 0.6]


def test_gold_rise_steps_is_the_run_length_without_hacking():
    settings = RLHFSettings(window=1)
    assert advrm_rlhf.gold_rise_steps(advrm_rlhf.judge(steps([0.5, 0.6, 0.7], [0, 1, 2]), [], settings)) == 3
    assert advrm_rlhf.gold_rise_steps(advrm_rlhf.judge(steps([0.5, 0.8, 0.5, 0.4], [0, 1, 2, 3]), [], settings)) == 2


def test_the_held_out_curve_decides_when_there_is_one():
    noisy = steps([0.5, 0.8, 0.5, 0.4, 0.3, 0.3], range(6))  # the steps' own gold: falls after step 2 ...
    held_out = [{"step": s, "gold": g, "proxy": p} for s, g, p in [(0, 0.5, 0), (3, 0.6, 1), (6, 0.62, 2)]]
    settings = RLHFSettings(window=1, eval_window=1)
    found = advrm_rlhf.judge(noisy, held_out, settings)  # ... the held-out questions say it never fell
    assert (found["step"], found["run_steps"], found["curve"]) == (None, 6, "held_out")
    assert advrm_rlhf.judge(noisy, [], settings)["curve"] == "steps"
    assert advrm_rlhf.judge(noisy, [], settings)["step"] == 2


# -- the held-out measurement -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def policy(test_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (
        AutoModelForCausalLM.from_pretrained(test_model_dir, dtype=torch.float32),
        AutoTokenizer.from_pretrained(test_model_dir),
    )


def held_out_gold(rows, **settings):
    from types import SimpleNamespace

    from probexit.training.problem_files import ProblemRecord
    from probexit.training.tinyworld.problems import generate_splits

    problems = [ProblemRecord(p.question, str(p.answer)) for p in generate_splits({"held_out": 3}, seed=11)["held_out"]]
    scorer = lambda questions, texts: [SimpleNamespace(normalised=float(len(t))) for t in texts]  # noqa: E731
    return problems, advrm_rlhf.HeldOutGold(
        problems,
        scorer,
        rows.append,
        **{"every": 2, "samples": 2, "temperature": 1.0, "max_new_tokens": 48, **settings},
    )


@pytest.mark.slow
def test_held_out_gold_grades_the_policy_on_the_same_questions_each_time(policy):
    import torch

    model, tokenizer = policy
    rows = []
    problems, callback = held_out_gold(rows)
    model.train()
    side = tokenizer.padding_side
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    texts = callback.sample(model, tokenizer, step=4)
    assert torch.equal(torch.rand(3), expected_next)  # the trainer's random state is left as it was
    assert model.training and tokenizer.padding_side == side
    assert len(texts) == 6 and texts == callback.sample(model, tokenizer, step=4)  # the step seeds it
    assert texts != callback.sample(model, tokenizer, step=6)
    row = callback.measure(4, model, tokenizer)
    assert rows == [row] and row["step"] == 4 and row["n"] == 6
    assert row["proxy"] == sum(len(t) for t in texts) / 6  # the scorer saw the sampled texts
    assert (
        row["gold"]
        == sum(grading.grade(t, p.answer).gold for t, p in zip(texts, [p for p in problems for _ in range(2)])) / 6
    )
    assert callback.measure(4, model, tokenizer) is None and len(rows) == 1  # once a step


def test_held_out_gold_measures_at_the_start_every_few_steps_and_at_the_end(policy):
    from types import SimpleNamespace

    model, tokenizer = policy
    rows = []
    _, callback = held_out_gold(rows, max_new_tokens=8)
    state = SimpleNamespace(global_step=0, max_steps=5, is_world_process_zero=True)
    callback.on_train_begin(None, state, None, model=model, processing_class=tokenizer)
    for step in range(1, 6):
        state.global_step = step
        callback.on_step_end(None, state, None, model=model, processing_class=tokenizer)
    assert [row["step"] for row in rows] == [0, 2, 4, 5]
    resumed = []
    _, callback = held_out_gold(resumed, max_new_tokens=8)
    callback.on_train_begin(
        None,
        SimpleNamespace(global_step=3, max_steps=5, is_world_process_zero=True),
        None,
        model=model,
        processing_class=tokenizer,
    )
    assert resumed == []  # a resumed run measured its start before


def test_summary_reports_the_numbers_and_judges_no_goals():
    rounds = [
        {
            "round": k,
            "attack_success": {"standard": s, "strict": s / 2, "n": 10},
            "preference_accuracy": {"target": acc},
            "n_adversarial": n,
            "failure_modes": {},
        }
        for k, (s, acc, n) in enumerate([(0.8, 0.80, 7), (0.3, 0.81, 3), (0.05, 0.795, 0)])
    ]
    curves = {
        "standard": {"steps": steps([0.5, 0.8, 0.5, 0.4], [0, 1, 2, 3]), "hacking": {"step": 2, "run_steps": 4}},
        "advrm": {"steps": steps([0.5, 0.6, 0.7, 0.8], [0, 1, 2, 3]), "hacking": {"step": None, "run_steps": 4}},
    }
    metrics = advrm.summary(rounds, curves, advrm.AdvRMConfig(rlhf=RLHFSettings(steps=4, window=1)))
    assert metrics["attack_success_before"]["standard"] == 0.8
    assert [r["standard"] for r in metrics["attack_success_after"]] == [0.3, 0.05]
    assert (metrics["hacking_step_standard"], metrics["hacking_step_advrm"], metrics["rlhf_steps"]) == (2, None, 4)
    assert metrics["n_adversarial"] == 10
    assert metrics["gold_rise_steps"] == {"standard": 2, "advrm": 4}
    assert "goals" not in metrics  # the report states numbers; judging them is the reader's
    assert metrics["preference_bias"] is None and metrics["warnings"] == []


def test_summary_warns_when_the_target_cannot_tell_right_from_wrong():
    rounds = [
        {
            "round": k,
            "attack_success": {"standard": 0.6, "strict": 0.5, "n": 10},
            "preference_accuracy": {"target": 0.45},
            "n_adversarial": 4,
            "failure_modes": {},
        }
        for k in range(2)
    ]
    warnings = advrm.summary(rounds, {}, advrm.AdvRMConfig())["warnings"]
    assert len(warnings) == 1 and "45.0% of held-out pairs" in warnings[0]


@pytest.mark.parametrize("cut_share, warned", [(0.2, True), (0.05, False), (None, False)])
def test_summary_warns_when_many_sampled_answers_were_cut(cut_share, warned):
    rounds = [
        {
            "round": 0,
            "attack_success": {"standard": 0.1, "strict": 0.1, "n": 10},
            "preference_accuracy": {"target": 0.8},
            "n_adversarial": 0,
            "failure_modes": {},
        }
    ]
    sampled = {} if cut_share is None else {"cut_share": cut_share}
    metrics = advrm.summary(rounds, {}, advrm.AdvRMConfig(max_tokens=300), sampled)
    assert metrics["cut_answer_share"] == cut_share
    cut = [w for w in metrics["warnings"] if "cut at --max-tokens 300" in w]
    assert bool(cut) is warned
    assert all(w.startswith("20% of the policy's sampled answers") and "raise --max-tokens" in w for w in cut)


# -- preference pairs ------------------------------------------------------------------------------------------------
def test_preference_pairs_pair_right_with_wrong_answers_to_the_same_question():
    samples = [Sample("q1", "4", f"r{i}", 1.0) for i in range(3)] + [Sample("q1", "4", f"w{i}", 0.0) for i in range(2)]
    samples += [Sample("q2", "5", "only right", 1.0), Sample("q3", "6", "only wrong", 0.0)]
    pairs = preference_pairs(samples, per_question=4, seed=0)
    assert len(pairs) == 4 and {p.question for p in pairs} == {"q1"}
    assert {p.rejected for p in pairs} == {"w0", "w1"} and all(p.chosen.startswith("r") for p in pairs)
    assert len(set(pairs)) == len(pairs)
    assert len(preference_pairs(samples, per_question=2, seed=0)) == 2


# -- configs and the command line ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, message",
    [
        pytest.param(lambda: RewardModelSettings(ensemble_subset=0), "ensemble_subset", id="subset"),
        pytest.param(lambda: RewardModelSettings(ensemble_size=0), "at least 1", id="ensemble"),
        pytest.param(lambda: AttackSettings(num_generations=1), "num_generations", id="generations"),
        pytest.param(lambda: AttackSettings(success_percentile=100), "success_percentile", id="percentile"),
        pytest.param(lambda: RLHFSettings(margin=0), "margin", id="margin"),
        pytest.param(lambda: RLHFSettings(eval_samples=0), "eval_samples", id="held-out-samples"),
        pytest.param(lambda: RLHFSettings(eval_every=-1), "eval_every", id="held-out-every"),
        pytest.param(lambda: advrm.AdvRMConfig(samples_per_question=1), "right and a wrong", id="samples"),
        pytest.param(lambda: advrm.AdvRMConfig(rounds=-1), "rounds", id="rounds"),
    ],
)
def test_configs_refuse_settings_that_cannot_work(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_cli_flags_reach_every_config(tmp_path):
    from probexit.cli.main import build_parser

    args = build_parser().parse_args(
        [
            "train",
            "advrm",
            "--policy",
            "p",
            "--problems",
            "t.jsonl",
            "--eval-problems",
            "e.jsonl",
            "--out",
            str(tmp_path),
            "--rounds",
            "1",
            "--no-run-rlhf",
            "--rm-ensemble-size",
            "4",
            "--attack-steps",
            "3",
            "--attack-lam",
            "0.25",
            "--rlhf-steps",
            "7",
            "--seed",
            "5",
        ]
    )
    from probexit.cli.flags import config_values
    from probexit.cli.train import _advrm_parts

    assert args.job == "advrm" and args.run.__name__ == "run_advrm"
    assert config_values(args, advrm.AdvRMConfig)["rounds"] == 1 and not args.run_rlhf
    parts = {name: config_values(args, cls, prefix=prefix) for prefix, name, cls in _advrm_parts()[0]}
    assert parts["reward_models"]["ensemble_size"] == 4
    assert (parts["attack"]["steps"], parts["attack"]["lam"], parts["rlhf"]["steps"]) == (3, 0.25, 7)


def test_jobs_refuse_problems_without_gold_answers(tmp_path):
    from probexit.training.problem_files import ProblemRecord

    with pytest.raises(ValueError, match="gold answers"):
        advrm.AdvRMJob(tmp_path, [ProblemRecord("What is 1 + 2 + 3?", None)], [ProblemRecord("q", "1")], tmp_path)
