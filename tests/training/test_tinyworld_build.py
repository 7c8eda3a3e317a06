"""The build's pipeline on a miniature configuration: stages, determinism, resume and the manifest.
(The real build takes about 27 minutes; its numbers are in assets/tinyworld/card.json and manifest.json.)"""
import dataclasses
import json

import pytest

from probexit.training.tinyworld.build import Build, BuildConfig

pytestmark = pytest.mark.slow


def tiny_config() -> BuildConfig:
    config = BuildConfig(split_sizes={"train": 300, "validation": 20, "test": 20}, tokenizer_corpus_traces=300)
    return dataclasses.replace(config, policy=dataclasses.replace(
        config.policy, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2, num_kv_heads=2,
        steps=3, batch_size=8, micro_batch_size=4, warmup_steps=1, checkpoint_every=2,
        compile=False))  # byte-for-byte comparisons: inductor's kernels may round differently once recompiled


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


def test_compiled_training_computes_the_same_loss_as_eager(tmp_path):
    """The real build trains under torch.compile (1.6x faster here); it must compute the same model."""
    import random

    import torch
    from transformers import AutoTokenizer

    from probexit.training.tinyworld import policy
    from probexit.training.tinyworld.traces import TraceStyle

    config = tiny_config()
    Build(tmp_path, config, log=lambda _: None).run(("problems", "tokenizer"))
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "policy")
    problems = Build(tmp_path, config, log=lambda _: None).load_split("train")
    batches = policy.make_micro_batches(tokenizer, problems, TraceStyle(), random.Random(0), config.policy)
    eager = policy.build_model(config.policy, tokenizer)
    compiled = policy.build_model(config.policy, tokenizer)  # same seed, same initial weights
    eager_loss = policy.step_loss(eager, batches)
    compiled_loss = policy.step_loss(torch.compile(compiled, dynamic=True), batches)
    assert compiled_loss == pytest.approx(eager_loss, rel=2e-2)  # bf16 autocast on both sides
    eager_grad, compiled_grad = (torch.cat([p.grad.flatten() for p in model.parameters()]) for model in (eager, compiled))
    assert torch.nn.functional.cosine_similarity(eager_grad, compiled_grad, dim=0) > 0.99
