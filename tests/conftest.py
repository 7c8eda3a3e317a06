"""Session-wide test set-up: `gpu` tests skip themselves where CUDA is absent."""

from __future__ import annotations

import os

import pytest

# On 2 shared cores OpenMP busy-waiting can slow torch several-fold (docs/platform-notes.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def test_model_dir():
    """The tiny-world policy ($PROBEXIT_TEST_MODEL, else the embedded default)."""
    from tests.server.harness import find_test_model

    found = find_test_model()
    if found is None:
        pytest.skip("no test model: set PROBEXIT_TEST_MODEL or build the embedded default")
    return found


def uncertain_problems(n: int, seed: int):
    """Sums the embedded model answers sometimes right and sometimes wrong when it samples (operands to 20, 2-4
    operations): what a probe, the card's signal check and Adv-RM's preference pairs need. The widest problems of
    the tiny world's distribution would instead run past the short token budgets the tests give."""
    import random

    from probexit.training.tinyworld.problems import Problem

    rng = random.Random(seed)
    problems = []
    for _ in range(n):
        ops = tuple(rng.choice("+-") for _ in range(rng.randint(2, 4)))
        problems.append(Problem(tuple(rng.randint(0, 20) for _ in range(len(ops) + 1)), ops))
    return problems


def random_linear_probe(model_dir, out, seed=0):
    """A linear probe for `model_dir` whose scores spread over (0, 1): thresholds decide where it exits."""
    import json

    import torch

    from probexit.probes.fingerprint import model_identity
    from probexit.probes.probe import Probe, ProbeConfig, ProbeModel

    hidden = json.loads((model_dir / "config.json").read_text())["hidden_size"]
    torch.manual_seed(seed)
    module = ProbeModel(hidden, 0, torch.zeros(hidden), torch.ones(hidden))
    with torch.no_grad():
        module.net.weight.normal_(std=0.3 / hidden**0.5)
        module.net.bias.zero_()
    probe = Probe(ProbeConfig("linear", hidden, 0, model_identity(model_dir)), module.weights())
    probe.save(out)
    return probe


@pytest.fixture(scope="session")
def offline_engine(test_model_dir, tmp_path_factory):
    """One real vLLM CPU engine for the session, with the early-exit processor and a random probe
    (`engine.probe`); requests without early-exit settings are untouched by it (tested)."""
    from probexit.engine.offline import OfflineEngine
    from probexit.probes.probe import Probe
    from probexit.training.tinyworld.build import tiny_engine_kwargs

    probe_dir = tmp_path_factory.mktemp("probe")
    random_linear_probe(test_model_dir, probe_dir)
    with OfflineEngine(test_model_dir, probe=probe_dir, **{**tiny_engine_kwargs(), "max_num_seqs": 32}) as engine:
        engine.probe = Probe.load(probe_dir)
        yield engine


@pytest.fixture(scope="session")
def reference_model(test_model_dir):
    """The same policy in transformers, fp32, for parity checks."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(test_model_dir, dtype=torch.float32).eval()
