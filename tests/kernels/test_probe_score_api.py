"""Validation, ProbeWeights, the torch reference and backend selection, in the normal (uninterpreted) process."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings

import pytest
import torch

from probexit.kernels.probe_score import resolve_backend, score_boundary_rows
from probexit.kernels.reference import score_boundary_rows_numpy, score_boundary_rows_reference
from probexit.kernels.weights import ProbeWeights
from tests.kernels.cases import assert_matches, make_case, make_probe, uninterpreted


def _reference_in_float64(case):
    """The probe written out in float64, independently of the reference's addmm/addmv."""
    w = {name: None if t is None else t.double() for name, t in case.weights.tensors().items()}
    x = case.hidden.double()[case.rows]
    if case.features is not None:
        x = torch.cat([x, case.features.double()], dim=1)
    z = (x - w["mean"]) / w["scale"]
    logits = z @ w["w1"] + w["b1"] if w["w2"] is None else torch.relu(z @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"]
    return torch.sigmoid(logits).float()


FEATURE_COUNTS = [pytest.param(k, id=f"k{k}") for k in (0, 1, 9)]


@pytest.mark.parametrize("n_features", FEATURE_COUNTS)
@pytest.mark.parametrize(
    "width", [pytest.param(0, id="linear"), pytest.param(16, id="w16"), pytest.param(256, id="w256")]
)
@pytest.mark.parametrize("dtype", [pytest.param(torch.float32, id="fp32"), pytest.param(torch.bfloat16, id="bf16")])
def test_reference_computes_the_probe(width, dtype, n_features):
    case = make_case(67, 1536, width, dtype, n_features=n_features)
    scores, exits = score_boundary_rows_reference(*case)
    expected = _reference_in_float64(case)
    assert_matches(scores, exits, expected, expected >= case.thresholds, case.thresholds)


@pytest.mark.parametrize(
    "width", [pytest.param(0, id="linear"), pytest.param(16, id="w16"), pytest.param(256, id="w256")]
)
@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param(torch.float32, id="fp32"),
        pytest.param(torch.bfloat16, id="bf16"),
        pytest.param(torch.float16, id="fp16"),
    ],
)
@pytest.mark.parametrize("n_features", FEATURE_COUNTS)
def test_numpy_path_computes_the_probe(width, dtype, n_features):
    case = make_case(67, 1536, width, dtype, n_features=n_features)
    scores, exits = score_boundary_rows_numpy(*case)
    expected = _reference_in_float64(case)
    assert_matches(scores, exits, expected, expected >= case.thresholds, case.thresholds)
    reference_scores, _ = score_boundary_rows_reference(*case)
    assert torch.allclose(scores, reference_scores, atol=1e-6)


def test_numpy_path_saturates_quietly():
    """Huge logits give scores of exactly 0 and 1, without overflow warnings."""
    loud = ProbeWeights.from_tensors(torch.zeros(64), torch.ones(64), torch.full((64,), 1e3), 0.0)
    hidden = torch.stack([torch.ones(64), -torch.ones(64)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores, exits = score_boundary_rows_numpy(hidden, torch.tensor([0, 1]), loud, torch.tensor([0.5, 0.5]))
    assert scores.tolist() == [1.0, 0.0] and exits.tolist() == [True, False]


@pytest.mark.parametrize("n_features", [pytest.param(0, id="k0"), pytest.param(5, id="k5")])
@pytest.mark.parametrize("batch", [pytest.param(0, id="empty-batch"), pytest.param(4, id="no-rows-of-four")])
@pytest.mark.parametrize("backend", ["auto", "torch", "numpy"])
def test_no_rows_give_empty_results(batch, backend, n_features):
    case = make_case(batch, 64, 16, n_rows=0, n_features=n_features)
    scores, exits = score_boundary_rows(*case, backend=backend)
    assert scores.shape == exits.shape == (0,) and scores.dtype == torch.float32 and exits.dtype == torch.bool


@uninterpreted
def test_auto_uses_numpy_on_cpu_even_if_the_interpreter_is_requested_late(monkeypatch):
    # Setting TRITON_INTERPRET after triton's import changes nothing (module docstring): CPU stays on numpy.
    import probexit.kernels.triton_kernel  # noqa: F401 - triton imported here first when this file runs alone

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("auto", torch.zeros(1, 64)) == "numpy"
    case = make_case(5, 64, 0)
    assert_matches(*score_boundary_rows(*case), *score_boundary_rows_reference(*case), case.thresholds)


@uninterpreted
def test_triton_backend_on_cpu_says_how_to_get_the_interpreter():
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        score_boundary_rows(*make_case(5, 64, 16), backend="triton")


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend must be one of"):
        score_boundary_rows(*make_case(5, 64, 16), backend="cuda")


def _bad(**changes):
    return lambda case: case._replace(**{k: v(case) for k, v in changes.items()})


BAD_INPUTS = [
    pytest.param(_bad(hidden=lambda c: c.hidden[0]), "hidden must be a \\(batch, hidden_size\\)", id="hidden-1d"),
    pytest.param(_bad(hidden=lambda c: c.hidden.to(torch.int32)), "bfloat16, float16 or float32", id="hidden-int"),
    pytest.param(_bad(hidden=lambda c: c.hidden.double()), "bfloat16, float16 or float32", id="hidden-float64"),
    pytest.param(_bad(hidden=lambda c: c.hidden[:, :32]), "probe expects hidden size 64", id="hidden-size-mismatch"),
    pytest.param(_bad(rows=lambda c: c.rows.float()), "rows must be a 1-D int32 or int64", id="rows-float"),
    pytest.param(_bad(rows=lambda c: c.rows[None]), "rows must be a 1-D", id="rows-2d"),
    pytest.param(_bad(rows=lambda c: c.rows - 5), "got values from -", id="rows-negative"),
    pytest.param(_bad(rows=lambda c: c.rows + 5), "must index hidden's 5 rows", id="rows-past-the-end"),
    pytest.param(_bad(thresholds=lambda c: c.thresholds[:2]), "shaped like rows", id="thresholds-short"),
    pytest.param(_bad(thresholds=lambda c: (c.thresholds > 0.5).int()), "must be a float tensor", id="thresholds-int"),
    pytest.param(_bad(thresholds=lambda c: c.thresholds.tolist()), "must be torch tensors", id="thresholds-list"),
    pytest.param(_bad(weights=lambda c: c.weights.w1), "weights must be ProbeWeights", id="weights-tensor"),
]


@pytest.mark.parametrize("backend", ["auto", "torch", "triton", "numpy"])
@pytest.mark.parametrize(("corrupt", "message"), BAD_INPUTS)
def test_invalid_inputs_raise_value_error(corrupt, message, backend):
    with pytest.raises(ValueError, match=message):
        score_boundary_rows(*corrupt(make_case(5, 64, 16)), backend=backend)


BAD_FEATURES = [
    pytest.param(_bad(features=lambda c: None), "reads 5 features beside the hidden state", id="missing"),
    pytest.param(_bad(features=lambda c: c.features[:, :4]), "must be a \\(5, 5\\) bfloat16", id="too-few-columns"),
    pytest.param(_bad(features=lambda c: c.features[:3]), "got torch.float32 of shape \\(3, 5\\)", id="too-few-rows"),
    pytest.param(_bad(features=lambda c: c.features[:, 0]), "of shape \\(5,\\)", id="one-dimensional"),
    pytest.param(_bad(features=lambda c: c.features.int()), "got torch.int32", id="integer"),
    pytest.param(_bad(features=lambda c: c.features.double()), "got torch.float64", id="float64"),
    pytest.param(_bad(features=lambda c: c.features.tolist()), "torch tensor or None, not list", id="list"),
    pytest.param(_bad(features=lambda c: c.features.to("meta")), "must be on hidden's device", id="other-device"),
    pytest.param(
        _bad(weights=lambda c: make_probe(64, 16), features=lambda c: c.features),
        "must be a \\(5, 0\\)",
        id="for-a-probe-without-features",
    ),
]


@pytest.mark.parametrize("backend", ["auto", "torch", "triton", "numpy"])
@pytest.mark.parametrize(("corrupt", "message"), BAD_FEATURES)
def test_invalid_features_raise_value_error(corrupt, message, backend):
    with pytest.raises(ValueError, match=message):
        score_boundary_rows(*corrupt(make_case(5, 64, 16, n_features=5)), backend=backend)


@pytest.mark.parametrize("backend", ["auto", "torch", "numpy"])
def test_no_features_may_be_given_as_an_empty_tensor(backend):
    case = make_case(5, 64, 16)
    empty = score_boundary_rows(*case._replace(features=torch.empty(5, 0)), backend=backend)
    none = score_boundary_rows(*case, backend=backend)
    assert torch.equal(empty[0], none[0]) and torch.equal(empty[1], none[1])


def test_weights_build_from_plain_values_and_move():
    weights = ProbeWeights.from_tensors(
        [0.0, 1.0], [1.0, 2.0], [[1.0, 0.0, 2.0], [0.5, 0.5, 0.5]], [0.0] * 3, [1.0, -1.0, 0.5], [0.25]
    )
    assert (weights.hidden_size, weights.width, weights.dtype) == (2, 3, torch.float32)
    assert weights.b2.shape == ()
    half = weights.to(dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.width == 3 and weights.dtype == torch.float32
    linear = ProbeWeights.from_tensors([0.0], [1.0], [2.0], [0.5])
    assert (linear.width, linear.b1.shape, linear.w2) == (0, (), None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        linear.b1 = torch.tensor(1.0)


def test_weights_with_features_know_which_inputs_are_the_hidden_state():
    probe = make_probe(64, 16, n_features=9)
    assert (probe.input_size, probe.hidden_size, probe.n_features, probe.width) == (73, 64, 9, 16)
    moved = probe.to(dtype=torch.bfloat16)
    assert (moved.hidden_size, moved.n_features, moved.dtype) == (64, 9, torch.bfloat16)
    host = probe.host
    assert host.w1.shape == (64, 16) and host.feature_w1.shape == (9, 16) and host.n_features == 9
    linear = ProbeWeights.from_tensors(torch.zeros(3), torch.ones(3), [1.0, 2.0, 3.0], 0.0, n_features=2)
    assert (linear.hidden_size, linear.host.feature_w1) == (1, [2.0, 3.0])


def test_weights_from_a_trained_module_are_detached():
    layer = torch.nn.Linear(8, 1)
    weights = ProbeWeights.from_tensors(torch.zeros(8), torch.ones(8), layer.weight[0], layer.bias)
    assert not weights.w1.requires_grad and weights.b1.shape == ()


def test_weights_are_stored_contiguous():
    probe = make_probe(64, 16)
    weights = dataclasses.replace(probe, w1=probe.w1.t().contiguous().t())
    assert weights.w1.is_contiguous() and torch.equal(weights.w1, probe.w1)


BAD_WEIGHTS = [
    pytest.param(
        dict(scale=lambda p: p.scale.where(torch.arange(64) != 3, 0.0)), "scale must be positive", id="zero-scale"
    ),
    pytest.param(dict(scale=lambda p: p.scale[:10]), "mean and .scale must both be \\(D,\\) vectors", id="short-scale"),
    pytest.param(dict(w1=lambda p: p.w1[:, :8]), "w1 must have shape \\(64, 16\\)", id="w1-narrow"),
    pytest.param(dict(b1=lambda p: p.b1[:3]), "b1 must have shape \\(16,\\)", id="b1-short"),
    pytest.param(dict(b2=lambda p: None), "w2 and .b2 go together", id="w2-without-b2"),
    pytest.param(dict(w2=lambda p: p.w2.double()), "one device and one dtype", id="mixed-dtypes"),
    pytest.param(dict(w1=lambda p: p.w1.tolist()), "must be tensors", id="w1-list"),
    pytest.param(dict(n_features=lambda p: -1), "n_features must be an integer from 0 to 63", id="negative-features"),
    pytest.param(dict(n_features=lambda p: 64), "hidden state takes at least one\\); got 64", id="no-hidden-input"),
    pytest.param(dict(n_features=lambda p: 2.0), "must be an integer .*; got 2.0", id="float-features"),
    pytest.param(dict(n_features=lambda p: True), "must be an integer .*; got True", id="bool-features"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_WEIGHTS)
def test_invalid_weights_raise_value_error(changes, message):
    probe = make_probe(64, 16)
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(probe, **{name: change(probe) for name, change in changes.items()})


def test_integer_weights_are_rejected():
    with pytest.raises(ValueError, match="bfloat16, float16 or float32"):
        make_probe(64, 0).to(dtype=torch.int32)


def test_import_needs_no_gpu_and_does_no_work():
    code = (
        "import sys, probexit.kernels as k; assert 'torch' not in sys.modules;"  # the package does no work
        "import probexit.kernels.probe_score as m; assert 'triton' not in sys.modules;"  # the dispatcher neither
        "import probexit.kernels.triton_kernel as t;"
        "assert not t._SCRATCH and not t._TUNED and not t.kernel_is_interpreted() and not m.kernel_is_interpreted();"
        "print(m.BACKENDS is k.BACKENDS)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


# 96: wider than WIDE_MLP, so the host path takes the MLP's second layer in numpy
HOST_WIDTHS = [pytest.param(0, id="linear"), pytest.param(16, id="w16"), pytest.param(96, id="w96-wide")]


@pytest.mark.parametrize("width", HOST_WIDTHS)
def test_a_nan_feature_scores_nan_and_never_exits(width):
    case = make_case(3, 64, width, n_rows=3, n_features=5)
    features = case.features.clone()
    features[1, 4] = float("nan")
    for backend in ("torch", "numpy"):
        scores, exits = score_boundary_rows(
            *case._replace(thresholds=torch.zeros(3), features=features), backend=backend
        )
        assert scores.isnan().tolist() == [False, True, False] and exits.tolist() == [True, False, True]


HOST_FEATURES = [
    pytest.param(None, id="missing"),
    pytest.param([[0.0] * 5] * 2, id="too-few-rows"),
    pytest.param([[0.0] * 5, [0.0] * 4, [0.0] * 5], id="a-short-row"),
]


@pytest.mark.parametrize("width", HOST_WIDTHS)
@pytest.mark.parametrize("features", HOST_FEATURES)
def test_host_probe_refuses_features_that_do_not_fit(features, width):
    case = make_case(3, 64, width, n_features=5)
    with pytest.raises(ValueError, match="reads 5 features per boundary row: pass a list of 3 lists of 5 floats"):
        case.weights.host.scores(case.hidden, [0, 1, 2], features)


@pytest.mark.parametrize("width", HOST_WIDTHS)
def test_host_probe_scores_nan_states_as_nan_and_never_exits(width):
    """A NaN in the hidden state must not turn into a confident score on the host path (the MLP's ReLU is
    written in Python there, or in numpy for a wide MLP)."""
    case = make_case(3, 64, width)
    hidden = case.hidden.clone()
    hidden[1, 5] = float("nan")
    rows, thresholds = torch.tensor([0, 1, 2]), torch.zeros(3)
    scores, exits = score_boundary_rows_numpy(hidden, rows, case.weights, thresholds)
    assert torch.isnan(scores[1]) and not exits[1] and exits[0] and exits[2]
    assert case.weights.host.scores(hidden, [1])[0] != case.weights.host.scores(hidden, [1])[0]  # NaN
