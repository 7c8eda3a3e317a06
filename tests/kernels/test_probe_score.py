"""The fused kernel, run by Triton's interpreter on CPU, against the torch reference (and, for probes that read
features beside the hidden state, the numpy host path as well).

The interpreter runs in a worker process (tests/kernels/interpreter.py); inputs are built and the reference
is computed here, in the normal process.
"""

from __future__ import annotations

import pytest
import torch

from probexit.assets import default_paths
from probexit.kernels.reference import score_boundary_rows_numpy, score_boundary_rows_reference
from probexit.kernels.triton_kernel import KernelConfig
from probexit.probes.features import feature_count
from probexit.probes.probe import Probe
from tests.kernels.cases import assert_matches, make_case

DTYPES = [
    pytest.param(torch.float32, id="fp32"),
    pytest.param(torch.float16, id="fp16"),
    pytest.param(torch.bfloat16, id="bf16"),
]
WIDTHS = [
    pytest.param(0, id="linear"),
    pytest.param(16, id="w16"),
    pytest.param(32, id="w32"),
    pytest.param(256, id="w256"),
]
HIDDEN_SIZES = [pytest.param(h, id=f"h{h}") for h in (64, 96, 1000, 1536, 4096)]
BATCHES = [pytest.param(b, id=f"b{b}") for b in (0, 1, 5, 67)]


def _check(interpreted, case, **kwargs):
    scores, exits = interpreted("probe_score_triton", *case, **kwargs)
    assert_matches(scores, exits, *score_boundary_rows_reference(*case), case.thresholds)
    return scores, exits


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("hidden_size", HIDDEN_SIZES)
@pytest.mark.parametrize("batch", BATCHES)
def test_matches_reference_on_ragged_shapes(interpreted, batch, hidden_size, width, dtype):
    _check(interpreted, make_case(batch, hidden_size, width, dtype, seed=batch + hidden_size + width))


SPLIT_CONFIGS = [
    pytest.param(67, 1000, 0, KernelConfig(block_n=4, block_h=128, splits=3), id="linear-17-row-blocks-3-splits"),
    pytest.param(5, 4096, 16, KernelConfig(block_n=16, block_h=64, splits=7), id="w16-uneven-splits"),
    pytest.param(67, 1536, 32, KernelConfig(block_n=16, block_h=32, splits=48), id="w32-one-tile-per-split"),
    pytest.param(1, 96, 256, KernelConfig(block_n=16, block_h=32, splits=64), id="w256-more-splits-than-tiles"),
    pytest.param(67, 1000, 256, KernelConfig(block_n=64, block_h=128, splits=2), id="w256-ragged-last-tile"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("batch", "hidden_size", "width", "config"), SPLIT_CONFIGS)
def test_split_hidden_axis_matches_reference(interpreted, batch, hidden_size, width, config, dtype):
    _check(interpreted, make_case(batch, hidden_size, width, dtype, seed=7), config=config)


GATHERS = [
    pytest.param([4, 1, 4, 4, 0, 2, 1], 5, id="repeated-and-unordered"),
    pytest.param([2] * 9, 3, id="one-row-nine-times"),
    pytest.param(list(range(40, -1, -3)), 41, id="descending-stride-3"),
    pytest.param([0], 67, id="one-of-many"),
]


@pytest.mark.parametrize("width", [pytest.param(0, id="linear"), pytest.param(32, id="w32")])
@pytest.mark.parametrize("index_dtype", [pytest.param(torch.int32, id="int32"), pytest.param(torch.int64, id="int64")])
@pytest.mark.parametrize(("rows", "batch"), GATHERS)
def test_gathers_the_given_rows(interpreted, rows, batch, index_dtype, width):
    case = make_case(batch, 96, width, n_rows=len(rows))
    case = case._replace(rows=torch.tensor(rows, dtype=index_dtype))
    _check(interpreted, case)  # (a repeated row may round differently at another place in the dot tile)


STRIDED = [
    pytest.param(
        lambda x: torch.cat([x, torch.full_like(x, float("nan"))], dim=1)[:, : x.shape[1]],
        id="row-stride-wider-than-row",
    ),
    pytest.param(lambda x: x.t().contiguous().t(), id="column-major"),
]


@pytest.mark.parametrize("layout", STRIDED)
def test_reads_non_contiguous_hidden_states(interpreted, layout):
    case = make_case(67, 1000, 16, torch.bfloat16)
    strided = case._replace(hidden=layout(case.hidden))
    assert not strided.hidden.is_contiguous() and torch.equal(strided.hidden, case.hidden)
    _check(interpreted, strided)


MIXED = [
    pytest.param(torch.bfloat16, torch.float32, id="bf16-states-fp32-probe"),
    pytest.param(torch.float32, torch.bfloat16, id="fp32-states-bf16-probe"),
    pytest.param(torch.float16, torch.bfloat16, id="fp16-states-bf16-probe"),
]


@pytest.mark.parametrize(("dtype", "weight_dtype"), MIXED)
@pytest.mark.parametrize("width", [pytest.param(0, id="linear"), pytest.param(256, id="w256")])
def test_probe_and_states_may_differ_in_dtype(interpreted, dtype, weight_dtype, width):
    _check(interpreted, make_case(5, 1536, width, dtype, weight_dtype=weight_dtype))


THRESHOLD_RUNS = [
    pytest.param("probe_score_triton", {}, id="kernel"),
    pytest.param("probe_score_triton", {"config": KernelConfig(16, 64, splits=5)}, id="kernel-split"),
    pytest.param("score_boundary_rows_reference", {}, id="reference"),
]


@pytest.mark.parametrize("width", [pytest.param(0, id="linear"), pytest.param(256, id="w256")])
@pytest.mark.parametrize(("function", "kwargs"), THRESHOLD_RUNS)
def test_a_threshold_equal_to_the_score_exits(interpreted, function, kwargs, width):
    case = make_case(67, 1000, width, torch.bfloat16)
    scores, _ = interpreted(function, *case, **kwargs)
    _, exits_at = interpreted(function, *case._replace(thresholds=scores), **kwargs)
    above = torch.nextafter(scores, torch.tensor(float("inf")))
    _, exits_above = interpreted(function, *case._replace(thresholds=above), **kwargs)
    assert exits_at.all() and not exits_above.any()


def test_split_launches_repeat_exactly_and_leave_their_tickets_zeroed(interpreted):
    case = make_case(5, 4096, 32, torch.float16)
    config = KernelConfig(16, 64, splits=16)
    first, second = (interpreted("probe_score_triton", *case, config=config) for _ in range(2))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    _, tickets = interpreted("_scratch", torch.device("cpu"), 0, 0)
    assert not tickets.any()


FEATURE_SHAPES = [pytest.param(b, h, id=f"b{b}-h{h}") for b, h in ((0, 96), (1, 1000), (67, 96))]
# 24: a masked BLOCK_W of 32; 96: past WIDE_MLP, the host path's numpy second layer
FEATURE_WIDTHS = [pytest.param(0, id="linear"), pytest.param(24, id="w24"), pytest.param(96, id="w96")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", FEATURE_WIDTHS)
@pytest.mark.parametrize("n_features", [pytest.param(k, id=f"k{k}") for k in (0, 1, 5, 9)])
@pytest.mark.parametrize(("batch", "hidden_size"), FEATURE_SHAPES)
def test_features_beside_the_hidden_state_agree_on_every_path(
    interpreted, batch, hidden_size, n_features, width, dtype
):
    case = make_case(batch, hidden_size, width, dtype, n_features=n_features, seed=batch + n_features + width)
    expected = score_boundary_rows_reference(*case)
    assert_matches(*interpreted("probe_score_triton", *case), *expected, case.thresholds)
    assert_matches(*score_boundary_rows_numpy(*case), *expected, case.thresholds)


FEATURE_SPLITS = [
    pytest.param(67, 1000, 0, KernelConfig(block_n=16, block_h=128, splits=3), id="linear-5-row-blocks-3-splits"),
    pytest.param(5, 4096, 24, KernelConfig(block_n=16, block_h=64, splits=7), id="w24-uneven-splits"),
    pytest.param(1, 96, 256, KernelConfig(block_n=16, block_h=32, splits=64), id="w256-more-splits-than-tiles"),
]


@pytest.mark.parametrize("dtype", [pytest.param(torch.float32, id="fp32"), pytest.param(torch.bfloat16, id="bf16")])
@pytest.mark.parametrize(("batch", "hidden_size", "width", "config"), FEATURE_SPLITS)
def test_features_count_once_when_the_hidden_axis_is_split(interpreted, batch, hidden_size, width, config, dtype):
    _check(interpreted, make_case(batch, hidden_size, width, dtype, n_features=9, seed=7), config=config)


FEATURE_LAYOUTS = [
    pytest.param(lambda f: torch.cat([f, torch.full_like(f, float("nan"))], dim=1)[:, : f.shape[1]], id="wide-rows"),
    pytest.param(lambda f: f.t().contiguous().t(), id="column-major"),
]


@pytest.mark.parametrize("layout", FEATURE_LAYOUTS)
def test_reads_non_contiguous_features(interpreted, layout):
    case = make_case(67, 96, 24, torch.bfloat16, n_features=5)
    strided = case._replace(features=layout(case.features))
    assert not strided.features.is_contiguous() and torch.equal(strided.features, case.features)
    _check(interpreted, strided)


@pytest.mark.parametrize(
    ("dtype", "feature_dtype"),
    [
        pytest.param(torch.bfloat16, torch.float32, id="bf16-states-fp32-features"),
        pytest.param(torch.float32, torch.float16, id="fp32-states-fp16-features"),
    ],
)
def test_features_may_differ_in_dtype(interpreted, dtype, feature_dtype):
    _check(interpreted, make_case(5, 1536, 24, dtype, n_features=9, feature_dtype=feature_dtype))


def test_auto_backend_interprets_in_an_interpreted_process(interpreted):
    case = make_case(5, 96, 16)
    assert interpreted("resolve_backend", "auto", case.hidden) == "triton"
    assert_matches(*interpreted("score_boundary_rows", *case), *score_boundary_rows_reference(*case), case.thresholds)


def test_the_embedded_probe_agrees_on_every_path(interpreted):
    """The served default's own probe (its weights, width and the features it reads), at a CPU engine's batch."""
    probe = Probe.load(default_paths().probe)
    n_features = feature_count(probe.config.inputs)
    case = make_case(8, probe.config.hidden_size, probe.config.width, n_features=n_features, seed=11)
    case = case._replace(weights=probe.weights)
    expected = score_boundary_rows_reference(*case)
    assert_matches(*interpreted("probe_score_triton", *case), *expected, case.thresholds)
    assert_matches(*score_boundary_rows_numpy(*case), *expected, case.thresholds)
