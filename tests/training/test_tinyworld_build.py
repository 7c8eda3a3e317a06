"""The build's pipeline on a miniature configuration: stages, determinism, resume and the manifest.
(The real build takes about 2 h 37 min on 2 AVX2 cores, 3 h 6 min with the EMPO baseline; its numbers are in
assets/tinyworld/card.json, empo_metrics.json and manifest.json.)"""

import dataclasses
import json

import pytest
import torch

from probexit.training.tinyworld.build import Build, BuildConfig

pytestmark = pytest.mark.slow


def tiny_config() -> BuildConfig:
    config = BuildConfig(split_sizes={"train": 300, "validation": 20, "test": 20}, tokenizer_corpus_traces=300)
    return dataclasses.replace(
        config,
        policy=dataclasses.replace(
            config.policy,
            hidden_size=64,
            intermediate_size=128,
            num_layers=2,
            num_heads=2,
            num_kv_heads=2,
            steps=3,
            stop_at=None,
            batch_size=8,
            micro_batch_size=4,
            warmup_steps=1,
            checkpoint_every=2,
            compile=False,
        ),
    )  # byte-for-byte comparisons: inductor's kernels may round differently once recompiled


def test_early_stages_are_deterministic_and_resume(tmp_path):
    stages = ("problems", "tokenizer", "sft")
    first, second = tmp_path / "a", tmp_path / "b"
    Build(first, tiny_config(), log=lambda _: None).run(stages)
    Build(second, tiny_config(), log=lambda _: None).run(stages)
    manifest_a = json.loads((first / "manifest.json").read_text())
    manifest_b = json.loads((second / "manifest.json").read_text())
    timing_free = lambda files: {k: v for k, v in files.items() if k != "policy_sft.json"}  # noqa: E731
    assert timing_free(manifest_a["files"]) == timing_free(manifest_b["files"])  # same seed, same bytes
    assert {"problems/train.jsonl", "policy/model.safetensors", "policy/tokenizer.json"} <= set(manifest_a["files"])
    logged = []
    Build(first, tiny_config(), log=logged.append).run(stages)
    assert logged == [f"tinyworld: {name}: done already, skipped" for name in stages]


def test_unknown_stage_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown build stage"):
        Build(tmp_path, tiny_config()).run(("nonsense",))


def test_interrupted_sft_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from probexit.training.tinyworld import policy

    stages = ("problems", "tokenizer", "sft")
    Build(tmp_path / "whole", tiny_config(), log=lambda _: None).run(stages)

    real, calls = policy.make_micro_batches, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # after two steps (and the checkpoint at step 2)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(policy, "make_micro_batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Build(tmp_path / "resumed", tiny_config(), log=lambda _: None).run(stages)
    monkeypatch.setattr(policy, "make_micro_batches", real)
    Build(tmp_path / "resumed", tiny_config(), log=lambda _: None).run(stages)
    whole = (tmp_path / "whole" / "policy" / "model.safetensors").read_bytes()
    assert (tmp_path / "resumed" / "policy" / "model.safetensors").read_bytes() == whole


def _one_steps_batches(tmp_path):
    """The miniature build's tokenizer and the micro-batches of its first SFT step."""
    import random

    from transformers import AutoTokenizer

    from probexit.training.tinyworld import policy
    from probexit.training.tinyworld.traces import TraceStyle

    config = tiny_config()
    Build(tmp_path, config, log=lambda _: None).run(("problems", "tokenizer"))
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "policy")
    problems = Build(tmp_path, config, log=lambda _: None).load_split("train")
    return tokenizer, policy.make_micro_batches(tokenizer, problems, TraceStyle(), random.Random(0), config.policy)


def test_compiled_training_computes_the_same_loss_as_eager(tmp_path):
    """The real build trains under torch.compile (1.6x faster here); it must compute the same model."""
    from probexit.training.tinyworld import policy

    tokenizer, batches = _one_steps_batches(tmp_path)
    eager = policy.build_model(tiny_config().policy, tokenizer)
    compiled = policy.build_model(tiny_config().policy, tokenizer)  # same seed, same initial weights
    eager_loss = policy.step_loss(eager, batches)
    compiled_loss = policy.step_loss(torch.compile(compiled, dynamic=True), batches)
    assert compiled_loss == pytest.approx(eager_loss, rel=2e-2)  # the same autocast (bf16 or none) on both
    eager_grad, compiled_grad = (
        torch.cat([p.grad.flatten() for p in model.parameters()]) for model in (eager, compiled)
    )
    assert torch.nn.functional.cosine_similarity(eager_grad, compiled_grad, dim=0) > 0.99


@pytest.mark.parametrize("bf16", [True, False])
def test_sft_computes_in_bf16_only_when_asked(tmp_path, bf16):
    """bf16 autocast where the CPU computes bf16 natively (the default decides), fp32 otherwise: an AVX2-only CPU
    emulates bf16 about 15x slower than it computes fp32."""
    from probexit.training.tinyworld import policy

    tokenizer, batches = _one_steps_batches(tmp_path)
    model = policy.build_model(tiny_config().policy, tokenizer)
    dtypes = []
    model.lm_head.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    loss = policy.step_loss(model, batches, bf16=bf16)
    assert loss > 0 and all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    assert set(dtypes) == {torch.bfloat16 if bf16 else torch.float32}
    assert isinstance(policy.native_bf16(), bool)


@pytest.mark.parametrize("pinned", [True, False])
def test_sft_precision_can_be_pinned(tmp_path, monkeypatch, pinned):
    """`PolicyConfig.bf16` overrides the CPU's choice (the build pins fp32: bf16 and fp32 runs of the same
    schedule stop at different policies), and policy_sft.json's `bf16_autocast` says what ran."""
    from transformers import AutoTokenizer

    from probexit.training.tinyworld import policy

    assert BuildConfig().policy.bf16 is False
    config = dataclasses.replace(tiny_config(), policy=dataclasses.replace(tiny_config().policy, bf16=pinned))
    build = Build(tmp_path, config, log=lambda _: None)
    build.run(("problems", "tokenizer"))
    real, asked = policy.step_loss, []
    monkeypatch.setattr(
        policy, "step_loss", lambda model, batches, bf16=None: asked.append(bf16) or real(model, batches, bf16)
    )
    monkeypatch.setattr(policy, "native_bf16", lambda: not pinned)  # the CPU would choose the other way
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "policy")
    _, stats = policy.train_policy(tokenizer, build.load_split("train"), config.style, config.policy, build.work)
    assert asked == [pinned] * config.policy.steps and stats["bf16_autocast"] is pinned


def test_stop_at_ends_sft_early_on_the_full_schedule(tmp_path):
    """stop_at K gives the weights a full-length run has at step K (its snapshot), not a shorter schedule's."""
    import torch
    from safetensors.torch import load_file

    config = dataclasses.replace(tiny_config(), policy=dataclasses.replace(tiny_config().policy, steps=4))
    whole = Build(tmp_path / "whole", config, log=lambda _: None)
    whole.run(("problems", "tokenizer"))
    from transformers import AutoTokenizer

    from probexit.training.tinyworld.policy import train_policy

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "whole" / "policy")
    train_policy(
        tokenizer, whole.load_split("train"), config.style, config.policy, tmp_path / "whole" / "work", snapshots=(2,)
    )
    snapshot = torch.load(tmp_path / "whole" / "work" / "sft_step2.pt")
    stopped = dataclasses.replace(config, policy=dataclasses.replace(config.policy, stop_at=2))
    Build(tmp_path / "stopped", stopped, log=lambda _: None).run(("problems", "tokenizer", "sft"))
    saved = load_file(tmp_path / "stopped" / "policy" / "model.safetensors")
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, snapshot[name].to(torch.float16), rtol=0, atol=0)
    with pytest.raises(ValueError, match="stop_at must be at least 1"):
        dataclasses.replace(config.policy, stop_at=0)


def test_training_beyond_the_schedule_goes_on_at_its_final_learning_rate():
    from probexit.training.tinyworld.policy import PolicyConfig, learning_rate_at

    within = PolicyConfig(steps=100, warmup_steps=10)
    extended = dataclasses.replace(within, stop_at=300)
    assert [learning_rate_at(s, within) for s in range(100)] == [learning_rate_at(s, extended) for s in range(100)]
    final = learning_rate_at(99, within)
    assert all(learning_rate_at(s, extended) == pytest.approx(final, rel=0.01) for s in range(100, 300))
    assert extended.last_step == 300


def test_a_stage_that_runs_again_forgets_every_later_one(tmp_path):
    build = Build(tmp_path, tiny_config(), log=lambda _: None)
    for stage in Build.STAGES:
        (build.work / f"{stage}.done").touch()
    (build.work / "sft_checkpoint.pt").write_bytes(b"x")
    (build.work / "empo_job" / "checkpoints").mkdir(parents=True)
    (build.work / "probe_job" / "traces").mkdir(parents=True)
    (build.work / "sft.done").unlink()  # SFT runs again: EMPO, the card and the probe were made from the old policy
    build.invalidate_after("sft")
    assert sorted(p.name for p in build.work.glob("*.done")) == ["problems.done", "tokenizer.done"]
    assert (build.work / "sft_checkpoint.pt").exists()  # its own checkpoint stays: SFT resumes from it
    assert not (build.work / "empo_job").exists() and not (build.work / "probe_job").exists()


def test_the_empo_stage_serves_the_tuned_policy_without_reading_answers(tmp_path, monkeypatch):
    """The stage trains EMPO from the SFT policy (questions only) and puts the tuned weights in policy/."""
    from safetensors.torch import load_file

    from probexit.training import empo_job

    config = dataclasses.replace(
        tiny_config(),
        empo_questions=4,
        empo_eval_problems=0,  # no evaluation engine: training alone
        empo=dataclasses.replace(
            tiny_config().empo,
            steps=1,
            questions_per_step=2,
            num_generations=2,
            max_completion_length=16,
            save_steps=1,
            learning_rate=1e-2,
            warmup_steps=0,
        ),
    )
    seen = []
    real = empo_job.EMPOJob.run

    def spy(job):
        seen.extend(problem.answer for problem in job.problems)
        return real(job)

    monkeypatch.setattr(empo_job.EMPOJob, "run", spy)
    build = Build(tmp_path, config, log=lambda _: None)
    build.run(("problems", "tokenizer", "sft", "empo"))
    assert seen == [None] * 4  # EMPO never had an answer to read
    base = load_file(build.work / "empo_base" / "model.safetensors")
    tuned = load_file(tmp_path / "policy" / "model.safetensors")
    assert tuned.keys() == base.keys() and all(t.dtype == base[k].dtype for k, t in tuned.items())
    trained = load_file(build.work / "empo_job" / "policy" / "model.safetensors")  # what GRPO saved, in fp32
    assert all((tuned[k] == trained[k].half()).all() for k in base)  # the served policy is the tuned one
    metrics = json.loads((tmp_path / "empo_metrics.json").read_text())
    assert metrics["steps"] == 1 and str(tmp_path) not in json.dumps(metrics)
    assert (tmp_path / "policy" / "tokenizer.json").exists() and (
        tmp_path / "policy" / "generation_config.json"
    ).exists()
