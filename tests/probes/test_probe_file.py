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
    from probexit.kernels.reference import score_boundary_rows_reference

    rows, thresholds = torch.arange(3), torch.full((3,), 0.5)
    before, _ = score_boundary_rows_reference(hidden, rows, probe.weights, thresholds)
    after, _ = score_boundary_rows_reference(hidden, rows, loaded.weights, thresholds)
    torch.testing.assert_close(before, after)


def test_module_and_weights_agree():
    torch.manual_seed(1)
    module = ProbeModel(16, 8, torch.randn(16), torch.rand(16) + 0.5)
    hidden = torch.randn(5, 16)
    from probexit.kernels.reference import score_boundary_rows_reference

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


@pytest.mark.parametrize(
    "change, message",
    [
        pytest.param({"format": "other"}, "not a probexit-probe", id="format"),
        pytest.param({"hidden_size": 32}, "disagree", id="sizes"),
        pytest.param({"risk_measure": "vibes"}, "risk measure 'vibes'", id="risk-measure"),
        pytest.param(
            {"boundary_policy": {"mode": "sentence"}}, "boundary mode 'sentence'.*newer probexit", id="unknown-mode"
        ),
        pytest.param({"labels": "oracle"}, "labels 'oracle'", id="unknown-labels"),
    ],
)
def test_a_config_that_does_not_fit_is_refused_in_one_sentence(tmp_path, change, message):
    make_probe().save(tmp_path / "p")
    config = json.loads((tmp_path / "p" / "probe.json").read_text())
    (tmp_path / "p" / "probe.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ProbeFileError, match=message):
        Probe.load(tmp_path / "p")


@pytest.mark.parametrize(
    "other, named",
    [
        pytest.param(ModelIdentity("big", 32, 512, "abc123"), "hidden_size", id="hidden-size"),
        pytest.param(ModelIdentity("tiny", 16, 1024, "abc123"), "vocab_size", id="vocab"),
        pytest.param(ModelIdentity("tiny-ft", 16, 512, "zzz"), "fingerprint", id="fine-tuned"),
    ],
)
def test_mismatched_model_is_refused(other, named):
    with pytest.raises(ProbeFileError, match=named):
        make_probe().check_compatible(other)
    make_probe().check_compatible(IDENTITY)  # the same model passes


def test_threshold_for_risk_takes_the_largest_certified_level():
    config = make_probe(
        calibration=[CalibrationPoint(0.02, 0.97), CalibrationPoint(0.05, 0.9), CalibrationPoint(0.1, 0.7)]
    ).config
    assert config.threshold_for_risk(0.05) == 0.9
    assert config.threshold_for_risk(0.07) == 0.9
    assert config.threshold_for_risk(0.5) == 0.7
    assert config.threshold_for_risk(0.01) == 1.01  # stricter than anything certified: never exit
    with pytest.raises(ValueError, match="no calibration table"):
        make_probe().config.threshold_for_risk(0.05)


def test_calibration_table_round_trips_with_its_harm_columns(tmp_path):
    table = [
        CalibrationPoint(0.01, 0.8, harm_calibration=0.004, harm_test=0.006),
        CalibrationPoint(0.05, 0.4, 0.03, 0.04),
    ]
    make_probe(calibration=table).save(tmp_path / "p")
    written = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert written["risk_measure"] == "harm"
    assert written["calibration"][0] == {
        "max_risk": 0.01,
        "threshold": 0.8,
        "harm_calibration": 0.004,
        "harm_test": 0.006,
    }
    loaded = Probe.load(tmp_path / "p").config
    assert loaded.calibration == table and loaded.risk_measure == "harm"
    assert loaded.threshold_for_risk(0.02) == 0.8


def test_an_older_probe_file_without_harm_columns_still_loads(tmp_path):
    make_probe().save(tmp_path / "p")
    config = json.loads((tmp_path / "p" / "probe.json").read_text())
    del config["risk_measure"]
    config["calibration"] = [{"max_risk": 0.05, "threshold": 0.49}, {"max_risk": 0.1, "threshold": 0.29}]
    (tmp_path / "p" / "probe.json").write_text(json.dumps(config))
    loaded = Probe.load(tmp_path / "p").config
    assert loaded.calibration == [CalibrationPoint(0.05, 0.49), CalibrationPoint(0.1, 0.29)]
    assert loaded.calibration[0].harm_test is None
    assert loaded.risk_measure == "premature_exit"  # what such a table certified
    assert loaded.threshold_for_risk(0.05) == 0.49


def test_the_embedded_probe_certifies_harm():
    from probexit.assets import default_paths

    config = Probe.load(default_paths().probe).config
    assert config.risk_measure == "harm"
    assert all(point.harm_calibration is not None and point.harm_test is not None for point in config.calibration)
    assert config.default_threshold in {point.threshold for point in config.calibration}  # one it certified


def test_the_mode_and_the_labels_round_trip_and_older_files_are_answer_and_reader(tmp_path):
    from probexit.probes.boundary import BoundaryPolicyConfig

    make_probe(boundary_policy=BoundaryPolicyConfig(mode="paragraph"), labels="forced").save(tmp_path / "new")
    loaded = Probe.load(tmp_path / "new").config
    assert (loaded.boundary_policy.mode, loaded.labels) == ("paragraph", "forced")
    make_probe().save(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "probe.json").read_text())
    config.pop("labels")
    config["boundary_policy"].pop("mode")
    (tmp_path / "old" / "probe.json").write_text(json.dumps(config))
    loaded = Probe.load(tmp_path / "old").config
    assert (loaded.boundary_policy.mode, loaded.labels) == ("answer", "reader")


def test_a_probe_with_inputs_beside_the_hidden_state_round_trips(tmp_path):
    from probexit.probes.features import feature_count

    inputs = ("end_of_thinking", "position")
    k = feature_count(inputs)
    module = ProbeModel(16 + k, 8, torch.randn(16 + k), torch.rand(16 + k) + 0.5)
    Probe(ProbeConfig("mlp", 16, 8, IDENTITY, inputs=inputs), module.weights(k)).save(tmp_path / "p")
    loaded = Probe.load(tmp_path / "p")
    assert loaded.config.inputs == inputs and loaded.weights.n_features == k and loaded.weights.hidden_size == 16
    config = json.loads((tmp_path / "p" / "probe.json").read_text())
    (tmp_path / "p" / "probe.json").write_text(json.dumps({**config, "inputs": ["middle_layer"]}))
    with pytest.raises(ProbeFileError, match="middle_layer.*cannot give"):
        Probe.load(tmp_path / "p")
