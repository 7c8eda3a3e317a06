"""The compiled kernel on a CUDA GPU against the torch reference (skipped where CUDA is absent)."""

from __future__ import annotations

import pytest
import torch
from triton.runtime.errors import OutOfResources

from probexit.kernels import triton_kernel
from probexit.kernels.probe_score import resolve_backend, score_boundary_rows
from probexit.kernels.reference import score_boundary_rows_reference
from probexit.kernels.triton_kernel import KernelConfig, gpu_candidates, probe_score_triton
from tests.kernels.cases import assert_matches, make_case, to_device

pytestmark = pytest.mark.gpu

# On GPU the MLP's dot runs on tensor cores (tf32 for fp32 probes, else the probe's 16-bit dtype), so scores
# agree with the fp32 reference to about 1e-3; the linear probe's fp32 sums agree far more closely.
ATOL = {0: 1e-5, 16: 5e-3, 32: 5e-3, 256: 5e-3}
DTYPES = [
    pytest.param(torch.float32, id="fp32"),
    pytest.param(torch.float16, id="fp16"),
    pytest.param(torch.bfloat16, id="bf16"),
]
WIDTHS = [pytest.param(w, id=f"w{w}" if w else "linear") for w in (0, 16, 32, 256)]
SHAPES = [pytest.param(b, h, id=f"b{b}-h{h}") for b, h in ((1, 1536), (5, 96), (8, 4096), (67, 1000), (256, 8192))]


def _check_on_gpu(case, **kwargs):
    width = case.weights.width
    scores, exits = probe_score_triton(*to_device(case, "cuda"), **kwargs)
    assert scores.is_cuda and exits.is_cuda
    assert_matches(
        scores, exits, *score_boundary_rows_reference(*case), case.thresholds, atol=ATOL[width], margin=ATOL[width]
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(("batch", "hidden_size"), SHAPES)
def test_tuned_kernel_matches_reference(batch, hidden_size, width, dtype):
    _check_on_gpu(make_case(batch, hidden_size, width, dtype, seed=batch + width))


@pytest.mark.parametrize(
    ("batch", "hidden_size", "width"),
    [
        pytest.param(1, 8192, 256, id="b1-h8192-w256"),
        pytest.param(67, 4096, 32, id="b67-h4096-w32"),
        pytest.param(256, 3584, 0, id="b256-h3584-linear"),
    ],
)
def test_every_tuning_candidate_matches_reference(batch, hidden_size, width):
    case = make_case(batch, hidden_size, width, torch.bfloat16)
    sm_count = torch.cuda.get_device_properties(0).multi_processor_count
    for config in gpu_candidates(batch, hidden_size, width, sm_count):
        try:
            _check_on_gpu(case, config=config)
        except OutOfResources:
            continue  # the tuner skips these too


@pytest.mark.parametrize("n_features", [pytest.param(1, id="k1"), pytest.param(9, id="k9")])
@pytest.mark.parametrize("dtype", [pytest.param(torch.float32, id="fp32"), pytest.param(torch.bfloat16, id="bf16")])
@pytest.mark.parametrize("width", [pytest.param(w, id=f"w{w}" if w else "linear") for w in (0, 32, 256)])
@pytest.mark.parametrize(("batch", "hidden_size"), SHAPES)
def test_tuned_kernel_reads_features(batch, hidden_size, width, dtype, n_features):
    case = make_case(batch, hidden_size, width, dtype, n_features=n_features, feature_dtype=torch.float32)
    _check_on_gpu(case)


def test_every_split_candidate_counts_features_once():
    case = make_case(1, 8192, 32, torch.bfloat16, n_features=9)
    sm_count = torch.cuda.get_device_properties(0).multi_processor_count
    for config in gpu_candidates(1, 8192, 32, sm_count):
        try:
            _check_on_gpu(case, config=config)
        except OutOfResources:
            continue


def test_split_launches_repeat_exactly_and_leave_their_tickets_zeroed():
    case = to_device(make_case(5, 4096, 256, torch.bfloat16), "cuda")
    config = KernelConfig(16, 64, splits=32, num_warps=8)
    first = probe_score_triton(*case, config=config)
    for _ in range(100):
        again = probe_score_triton(*case, config=config)
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])
    torch.cuda.synchronize()
    assert not triton_kernel._SCRATCH[case.hidden.device][1].any()


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_rows_out_of_range_on_the_gpu_score_nan_without_a_sync(backend):
    case = make_case(5, 96, 16)
    rows = torch.tensor([0, -1, 4, 5, 1000], device="cuda")
    gpu = to_device(case, "cuda")._replace(rows=rows)
    scores, exits = score_boundary_rows(*gpu._replace(thresholds=gpu.thresholds.new_zeros(5)), backend=backend)
    assert scores.isnan().tolist() == [False, True, False, True, True]
    assert exits.tolist() == [True, False, True, False, False]


def test_auto_uses_the_kernel_for_cuda_tensors():
    assert resolve_backend("auto", torch.zeros(1, 64, device="cuda")) == "triton"


@pytest.mark.parametrize("n_rows", [pytest.param(0, id="no-rows"), pytest.param(3, id="three-rows")])
def test_torch_backend_on_the_gpu_matches_cpu(n_rows):
    case = make_case(5, 1536, 32, torch.bfloat16, n_rows=n_rows)
    scores, exits = score_boundary_rows(*to_device(case, "cuda"), backend="torch")
    assert_matches(scores, exits, *score_boundary_rows_reference(*case), case.thresholds, atol=1e-4, margin=1e-4)
