"""Early exit inside the real vLLM CPU engine, on the tiny model.

The session's offline engine (tests/conftest.py), with a random linear probe whose scores spread over (0, 1), so that a
request's threshold decides where it exits; thresholds 0 and 1.01 give "always" and "never".
"""

from __future__ import annotations

import pytest
import torch

from probexit.probes.boundary import BoundaryPolicy, BoundaryPolicyConfig
from probexit.probes.fingerprint import model_identity
from probexit.probes.probe import Probe, ProbeConfig, ProbeFileError, ProbeModel
from probexit.probes.rules import ExitSettings
from tests.conftest import random_linear_probe

QUESTIONS = [
    f"What is {a} + {b} - {c}?"
    for a, b, c in [(3, 14, 7), (12, 9, 15), (0, 20, 4), (7, 7, 19), (18, 2, 3), (5, 16, 11), (9, 1, 20), (14, 14, 2)]
]
SAMPLING = {"temperature": 0.6, "top_p": 0.95, "max_tokens": 400}


@pytest.fixture(scope="module")
def model_dir(test_model_dir):
    return test_model_dir


@pytest.fixture(scope="module")
def engine(offline_engine):
    return offline_engine


def last_hidden(reference_model, generation) -> torch.Tensor:
    ids = torch.tensor([generation.prompt_ids + generation.token_ids])
    with torch.no_grad():
        return reference_model(ids, output_hidden_states=True).hidden_states[-1][0]  # (T, H)


@pytest.mark.slow
def test_boundary_hidden_state_equals_transformers(engine, reference_model):
    generations = engine.generate(
        engine.chat_prompts(QUESTIONS[:4]),
        **SAMPLING,
        seed=1,
        settings=ExitSettings(rule="none", record=True),
        progress=False,
    )
    policy = BoundaryPolicy(BoundaryPolicyConfig(), engine.tokenizer)
    compared = 0
    for generation in generations:
        boundaries = policy.segment(generation.prompt_ids, generation.token_ids)
        recorded = generation.recorded()
        assert sorted(recorded) == [b.token_index for b in boundaries]  # online positions = offline positions
        states = last_hidden(reference_model, generation)
        for index, evaluation in recorded.items():
            expected = states[len(generation.prompt_ids) + index]
            torch.testing.assert_close(torch.tensor(evaluation.hidden), expected, atol=1e-4, rtol=0)
            compared += 1
    assert compared >= 4


@pytest.mark.slow
def test_threshold_zero_exits_at_first_boundary_and_the_model_answers(engine):
    generations = engine.generate(
        engine.chat_prompts(QUESTIONS[:4]), **SAMPLING, seed=2, settings=ExitSettings(threshold=0.0), progress=False
    )
    policy = BoundaryPolicy(BoundaryPolicyConfig(), engine.tokenizer)
    for generation in generations:
        first = policy.segment(generation.prompt_ids, generation.token_ids)[0]
        assert generation.token_ids[first.token_index + 1] == policy.think_end_id
        exits = [e for e in generation.evaluations if e.exit]
        assert len(exits) == 1 and exits[0].boundary_index == 0 and exits[0].token_index == first.token_index
        assert "\\boxed{" in generation.text.split("</think>")[-1]
        assert generation.finish_reason == "stop"


@pytest.mark.slow
def test_threshold_above_one_never_fires_and_changes_no_token(engine):
    prompts = engine.chat_prompts(QUESTIONS)
    never = engine.generate(prompts, **SAMPLING, seed=3, settings=ExitSettings(threshold=1.01), progress=False)
    plain = engine.generate(prompts, **SAMPLING, seed=3, progress=False)
    assert [g.token_ids for g in never] == [g.token_ids for g in plain]
    assert all(not e.exit for g in never for e in g.evaluations)
    assert sum(len(g.evaluations) for g in never) >= len(prompts)  # it did score the boundaries
    assert all(g.evaluations == [] for g in plain)  # requests without early exit are not touched


@pytest.mark.slow
def test_concurrent_requests_get_their_own_decisions(engine, reference_model):
    """16 requests in one batch with different thresholds, some off; each decision matches an offline
    replay of its own trace: the first boundary whose reference score reaches the request's threshold."""
    from probexit.kernels.reference import score_boundary_rows_reference

    thresholds = [None, 0.0, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, None, 0.35, 0.42, 0.48, 0.52, 0.58, 1.01, 0.5]
    settings = [None if t is None else ExitSettings(threshold=t) for t in thresholds]
    policy = BoundaryPolicy(BoundaryPolicyConfig(), engine.tokenizer)
    results = engine.generate(
        engine.chat_prompts((QUESTIONS * 2)[:16]), **SAMPLING, seed=200, settings=settings, progress=False
    )
    exits_seen = 0
    for threshold, generation in zip(thresholds, results):
        if threshold is None:
            assert generation.evaluations == []
            continue
        boundaries = policy.segment(generation.prompt_ids, generation.token_ids)
        states = last_hidden(reference_model, generation)
        rows = torch.tensor([len(generation.prompt_ids) + b.token_index for b in boundaries])
        scores, _ = score_boundary_rows_reference(states, rows, engine.probe.weights, torch.zeros(len(rows)))
        expected_exit = next((i for i, s in enumerate(scores.tolist()) if s >= threshold), None)
        reported = [e for e in generation.evaluations if e.score is not None]
        assert [e.token_index for e in reported] == [b.token_index for b in boundaries]
        torch.testing.assert_close(torch.tensor([e.score for e in reported]), scores, atol=1e-4, rtol=0)
        exit_index = next((e.boundary_index for e in reported if e.exit), None)
        assert exit_index == expected_exit
        if exit_index is not None:
            exits_seen += 1
            assert generation.token_ids[boundaries[exit_index].token_index + 1] == policy.think_end_id
    assert exits_seen >= 3


def test_probe_for_another_hidden_size_is_refused_before_the_engine_starts(model_dir, tmp_path):
    from probexit.engine.offline import OfflineEngine
    from probexit.probes.fingerprint import ModelIdentity

    module = ProbeModel(64, 0, torch.zeros(64), torch.ones(64))
    identity = model_identity(model_dir)
    other = ModelIdentity(identity.name, 64, identity.vocab_size, identity.fingerprint)
    Probe(ProbeConfig("linear", 64, 0, other), module.weights()).save(tmp_path / "p")
    with pytest.raises(ProbeFileError, match="hidden_size"):
        OfflineEngine(model_dir, probe=tmp_path / "p")


def test_corrupt_probe_is_refused(model_dir, tmp_path):
    from probexit.engine.offline import OfflineEngine

    random_linear_probe(model_dir, tmp_path / "p")
    (tmp_path / "p" / "probe.safetensors").write_bytes(b"\x01" * 20)
    with pytest.raises(ProbeFileError, match="corrupt"):
        OfflineEngine(model_dir, probe=tmp_path / "p")


def test_unsupported_vllm_version_is_one_sentence(monkeypatch):
    import vllm

    from probexit.engine.adapter import UnsupportedVLLMError, require_supported_vllm

    monkeypatch.setattr(vllm, "__version__", "0.99.0")
    with pytest.raises(UnsupportedVLLMError, match=r"needs vLLM 0\.32\.0 .* but vLLM 0\.99\.0 is installed"):
        require_supported_vllm()


def test_adapter_touch_points_exist_in_this_vllm():
    """Fails loudly when an upgrade moves what the adapter reaches into."""
    from vllm.model_executor.custom_op import PluggableLayer, op_registry_oot  # noqa: F401
    from vllm.model_executor.layers.logits_processor import LogitsProcessor
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality  # noqa: F401
    from vllm.v1.sample.logits_processor import LogitsProcessor as V1LogitsProcessor

    assert issubclass(LogitsProcessor, PluggableLayer) and hasattr(LogitsProcessor, "register_oot")
    assert {"removed", "added", "moved"} <= set(BatchUpdate.__dataclass_fields__)
    from probexit.engine.adapter import EarlyExitLogitsProcessor

    assert issubclass(EarlyExitLogitsProcessor, V1LogitsProcessor)


def test_a_processor_that_reports_nothing_keeps_no_record_marks(test_model_dir):
    """A tensor-parallel rank other than the first reports nothing: its processor must still let the runtime's
    per-request marks go, step by step, or a long-running server would keep two for every request it served."""
    from transformers import AutoTokenizer

    from probexit.engine.adapter import TAP, EarlyExitLogitsProcessor
    from probexit.probes.runtime import EarlyExitRuntime

    tokenizer = AutoTokenizer.from_pretrained(test_model_dir)
    runtime = EarlyExitRuntime(BoundaryPolicy(BoundaryPolicyConfig(), tokenizer), None)
    processor = EarlyExitLogitsProcessor.__new__(EarlyExitLogitsProcessor)
    processor.runtime, processor.publisher = runtime, None
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTIONS[0]}], tokenize=False, add_generation_prompt=True
    )
    outputs: list[int] = []
    processor.states = {0: runtime.new_request("r0", ExitSettings(rule="none"), tokenizer.encode(prompt), outputs)}
    for token in tokenizer.encode("3 + 14 = 17. 17 - 7 = 10. So the answer is 10.\n\n</think>\n\n\\boxed{10}"):
        outputs.append(token)
        TAP.hidden = torch.zeros(1, 8)
        processor.apply(torch.zeros(1, len(tokenizer)))
    assert processor.states[0].complete and runtime.marks == []
