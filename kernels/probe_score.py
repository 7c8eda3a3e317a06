"""Score the boundary rows of one decode step with the probe, in a single fused Triton launch.

At a decode step some requests sit at a chunk boundary; their rows of the step's sampled-position hidden
states are gathered, followed by each row's features when the probe reads any (a few numbers per boundary
the caller computes), standardised with the probe's mean and scale, run through the probe (linear, or
Linear -> ReLU -> Linear), squashed with a sigmoid and compared with each row's own threshold:

    scores, exits = score_boundary_rows(hidden, rows, weights, thresholds, features)   # (N,) fp32, (N,) bool

This module is the dispatcher (Triton on CUDA, numpy for CPU tensors, the torch reference on request). The
parts it dispatches to: `weights` (ProbeWeights and the input checks), `reference` (the torch reference and
the numpy host path) and `triton_kernel` (the kernel, its wrapper and autotuning), imported only when a
Triton path is wanted, so that a CPU process scoring on the host never imports Triton.

Triton's interpreter runs the kernel on CPU, but only when TRITON_INTERPRET=1 is set before `triton` is
first imported: Triton's own library functions (tl.sum, tl.sigmoid) are jitted at that import and cannot
be interpreted afterwards. So the choice is made per process, not per call: in a process started with
TRITON_INTERPRET=1 the "auto" backend interprets the kernel on CPU tensors, in any other it uses the numpy
path there (and never imports Triton for it). The tests run the interpreted kernel in a worker process of
their own (tests/kernels).
"""

from __future__ import annotations

import os

import torch

from probexit.kernels import BACKENDS
from probexit.kernels.reference import score_boundary_rows_numpy, score_boundary_rows_reference


def score_boundary_rows(hidden, rows, weights, thresholds, features=None, backend: str = "auto"):
    """Probe scores (N,) fp32 and exit decisions (N,) bool (score >= threshold) for [hidden[rows] ; features].

    hidden (B, H) bf16/fp16/fp32; rows (N,) int32/int64, repeats and any order allowed; thresholds (N,)
    float; weights a ProbeWeights of hidden size H reading K = weights.n_features features; features (N, K)
    bf16/fp16/fp32, row i those of boundary row i (rows[i]), None when K is 0; all on hidden's device.
    Bad inputs raise ValueError.
    Rows already on a GPU are not range-checked (that would sync the step): an out-of-range row scores NaN
    and does not exit. backend: "triton" (the fused kernel), "torch" (the reference) or "auto": Triton for
    CUDA tensors and in an interpreted process (TRITON_INTERPRET=1 at import), numpy for other CPU tensors,
    the torch reference otherwise ("torch" and "numpy" name those paths directly).
    On GPU the first call per (dtypes, width, hidden size, batch rounded up to a power of two) times the
    launch candidates, once per process; the kernel's scratch buffers assume one stream per device.
    """
    return _BACKEND_FUNCTIONS[resolve_backend(backend, hidden)](hidden, rows, weights, thresholds, features)


def resolve_backend(backend: str, hidden) -> str:
    """The concrete backend ("triton", "torch" or "numpy") that `backend` means for this hidden-state tensor."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend != "auto":
        return backend
    on_cuda = isinstance(hidden, torch.Tensor) and hidden.is_cuda
    if on_cuda or kernel_is_interpreted():
        return "triton"
    on_host = isinstance(hidden, torch.Tensor) and hidden.device.type == "cpu"
    return "numpy" if on_host else "torch"


def kernel_is_interpreted() -> bool:
    """True in a process whose Triton interprets the kernel (the module docstring says when). Triton is imported
    to find out only where TRITON_INTERPRET=1 asks for the interpreter: elsewhere the answer is no."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        return False
    from probexit.kernels import triton_kernel

    return triton_kernel.kernel_is_interpreted()


def _score_with_triton(hidden, rows, weights, thresholds, features):
    from probexit.kernels.triton_kernel import probe_score_triton

    return probe_score_triton(hidden, rows, weights, thresholds, features)


_BACKEND_FUNCTIONS = {
    "triton": _score_with_triton,
    "torch": score_boundary_rows_reference,
    "numpy": score_boundary_rows_numpy,
}
