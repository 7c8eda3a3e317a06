import json

import pytest
import torch

from probexit.probes.fingerprint import ModelIdentity
from probexit.probes.probe import CalibrationPoint, Probe, ProbeConfig, ProbeFileError, ProbeModel

IDENTITY = ModelIdentity("tiny", 16, 512, "abc123")


def make_probe(width: int = 0, hidden: int = 16, **config) -> Probe:
    torch.manual_seed(0)
    module = ProbeModel(hidden, width, torch.randn(hidden), torch.rand(hidden) + 0.5)
    kind = "linear" if width == 0 else "mlp"
    return Probe(ProbeConfig(kind=kind, hidden_size=hidden, width=width, model=IDENTITY, **config), module.weights())


@pytest.mark.parametrize("width", [pytest.param(0, id="linear"), pytest.param(8, id="mlp")])
def test_round_trip_scores_the_same(tmp_path, width):
    probe = make_probe(width, calibration=[CalibrationPoint(0.05, 0.9), CalibrationPoint(0.1, 0.7)])
    probe.save(tmp_path / "p")
    loaded = Probe.load(tmp_path / "p")
    assert loaded.config == probe.config
    hidden = torch.randn(3, 16)
    from probexit.kernels.probe_score import score_boundary_rows_reference

    rows, thresholds = torch.arange(3), torch.full((3,), 0.5)
    before, _ = score_boundary_rows_reference(hidden, rows, probe.weights, thresholds)
    after, _ = score_boundary_rows_reference(hidden, rows, loaded.weights, thresholds)
    torch.testing.assert_close(before, after)


def test_module_and_weights_agree():
    torch.manual_seed(1)
    module = ProbeModel(16, 8, torch.randn(16), torch.rand(16) + 0.5)
    hidden = torch.randn(5, 16)
    from probexit.kernels.probe_score import score_boundary_rows_reference

    scores, _ = score_boundary_rows_reference(hidden, torch.arange(5), module.weights(), torch.zeros(5))
    torch.testing.assert_close(scores, torch.sigmoid(module(hidden)).detach())


def test_missing_folder_is_one_sentence(tmp_path):
    with pytest.raises(ProbeFileError, match="no probe at"):
        Probe.load(tmp_path / "absent")


def test_corrupt_weights(tmp_path):
    make_probe().save(tmp_path / "p")
    (tmp_path / "p" / "probe.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ProbeFileError, match="corrupt"):
        Probe.load(tmp_path / "p")


def test_corrupt_config(tmp_path):
    make_probe().save(tmp_path / "p")
    (tmp_path / "p" / "probe.json").write_text("{not json")
    with pytest.raises(ProbeFileError, match="not valid JSON"):
        Probe.load(tmp_path / "p")


def test_wrong_format_and_sizes(tmp_path):
    make_probe().save(tmp_path / "p")
    config = json.loads((tmp_path / "p" / "probe.json").read_text())
    (tmp_path / "p" / "probe.json").write_text(json.dumps({**config, "format": "other"}))
    with pytest.raises(ProbeFileError, match="not a probexit-probe"):
        Probe.load(tmp_path / "p")
    (tmp_path / "p" / "probe.json").write_text(json.dumps({**config, "hidden_size": 32}))
    with pytest.raises(ProbeFileError, match="disagree"):
        Probe.load(tmp_path / "p")


@pytest.mark.parametrize("other, named", [
    pytest.param(ModelIdentity("big", 32, 512, "abc123"), "hidden_size", id="hidden-size"),
    pytest.param(ModelIdentity("tiny", 16, 1024, "abc123"), "vocab_size", id="vocab"),
    pytest.param(ModelIdentity("tiny-ft", 16, 512, "zzz"), "fingerprint", id="fine-tuned"),
])
def test_mismatched_model_is_refused(other, named):
    with pytest.raises(ProbeFileError, match=named):
        make_probe().check_compatible(other)
    make_probe().check_compatible(IDENTITY)  # the same model passes


def test_threshold_for_risk_takes_the_largest_certified_level():
    config = make_probe(calibration=[CalibrationPoint(0.02, 0.97), CalibrationPoint(0.05, 0.9),
                                     CalibrationPoint(0.1, 0.7)]).config
    assert config.threshold_for_risk(0.05) == 0.9
    assert config.threshold_for_risk(0.07) == 0.9
    assert config.threshold_for_risk(0.5) == 0.7
    assert config.threshold_for_risk(0.01) == 1.01  # stricter than anything certified: never exit
    with pytest.raises(ValueError, match="no calibration table"):
        make_probe().config.threshold_for_risk(0.05)
