"""Start-up checks of the engine layer that need no engine: the served model's identity and the probe check."""

import json
from pathlib import Path

import pytest

from probexit.engine import setup as engine_setup
from probexit.engine.config import EngineConfig
from probexit.probes.fingerprint import model_identity
from tests.server.harness import find_test_model, make_probe


def test_start_up_fingerprints_a_local_model_once(tmp_path, monkeypatch):
    model = find_test_model()
    if model is None:
        pytest.skip("no test model")
    probe = make_probe(model, tmp_path / "probe", bias=1.0)
    calls = []
    monkeypatch.setattr(engine_setup, "model_identity", lambda path: calls.append(path) or model_identity(path))
    setup = engine_setup.prepare(EngineConfig(str(model), "m", probe=probe))  # the probe check and /v1/models' identity
    assert len(calls) == 1
    assert setup.identity["model_fingerprint"] == model_identity(model).fingerprint


def test_a_model_it_cannot_fingerprint_is_served_without_one(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8, "vocab_size": 16}))  # .bin weights only
    assert engine_setup._local_identity(tmp_path) is None
    assert engine_setup._local_identity(Path("org/a-hub-model")) is None
    assert engine_setup.served_identity(EngineConfig(str(tmp_path), "m"), None) == {
        "model_fingerprint": None,
        "probe_fingerprint": None,
    }
