"""Score the boundary rows of one decode step with the probe, in a single fused Triton launch.

At a decode step some requests sit at a chunk boundary; their rows of the step's sampled-position hidden
states are gathered, standardised with the probe's mean and scale, run through the probe (linear, or
Linear -> ReLU -> Linear), squashed with a sigmoid and compared with each row's own threshold:

    scores, exits = score_boundary_rows(hidden, rows, weights, thresholds)   # (N,) fp32, (N,) bool

The module follows the Triton tutorials: the kernel, its validating wrapper, a plain torch reference of the
same function, a numpy version of the reference for host tensors, and the dispatcher (Triton on CUDA, numpy
for CPU tensors, the torch reference on request), in that order.

Triton's interpreter runs the kernel on CPU, but only when TRITON_INTERPRET=1 is set before `triton` is
first imported: Triton's own library functions (tl.sum, tl.sigmoid) are jitted at that import and cannot
be interpreted afterwards. So the choice is made per process, not per call: in a process started with
TRITON_INTERPRET=1 the "auto" backend interprets the kernel on CPU tensors, in any other it uses the numpy
path there. The tests run the interpreted kernel in a worker process of their own (tests/kernels).
"""

from __future__ import annotations

import array
import dataclasses
import functools
import math

import numpy as np
import torch
import triton
import triton.language as tl
import triton.testing
from triton.runtime.errors import OutOfResources

from probexit.kernels import BACKENDS

_FLOAT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@dataclasses.dataclass(frozen=True, eq=False)  # tensors: compare by identity
class ProbeWeights:
    """A probe's parameters, built once per probe and moved to the serving device and dtype.

    Standardisation z = (x - mean) / scale (scale > 0), then
    linear probe (width 0): logit = z @ w1 + b1, with w1 (H,) and b1 a scalar; w2 and b2 are None;
    MLP probe (width W): logit = relu(z @ w1 + b1) @ w2 + b2, with w1 (H, W), b1 (W,), w2 (W,), b2 a scalar.
    All tensors share one device and one float dtype and are stored contiguous.
    """

    mean: torch.Tensor  # (H,)
    scale: torch.Tensor  # (H,)
    w1: torch.Tensor  # (H,) linear, (H, W) MLP
    b1: torch.Tensor  # () linear, (W,) MLP
    w2: torch.Tensor | None = None  # (W,) MLP only
    b2: torch.Tensor | None = None  # () MLP only

    def __post_init__(self) -> None:
        _check_weight_tensors(self)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                object.__setattr__(self, field.name, value.contiguous())
        if not bool((self.scale > 0).all()):
            raise ValueError("ProbeWeights.scale must be positive everywhere (it divides the hidden state)")

    @classmethod
    def from_tensors(cls, mean, scale, w1, b1, w2=None, b2=None, *, device=None, dtype=torch.float32):
        """Build from tensors, arrays or lists, detached (a probe here only scores); 1-element biases become scalars."""

        def convert(value, scalar=False):
            if value is None:
                return None
            tensor = torch.as_tensor(value).detach().to(device=device, dtype=dtype)
            return tensor.reshape(()) if scalar and tensor.numel() == 1 else tensor

        linear = w2 is None
        return cls(
            convert(mean),
            convert(scale),
            convert(w1),
            convert(b1, scalar=linear),
            convert(w2),
            convert(b2, scalar=True),
        )

    @property
    def hidden_size(self) -> int:
        return self.mean.shape[0]

    @property
    def width(self) -> int:
        """0 for a linear probe, else the hidden layer's width."""
        return 0 if self.w2 is None else self.w1.shape[1]

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.mean.dtype

    @functools.cached_property
    def host(self) -> HostProbe:
        """The numpy path's form of these weights, made once."""
        return HostProbe.from_weights(self)

    def to(self, device=None, dtype=None) -> ProbeWeights:
        moved = {
            f.name: None if (t := getattr(self, f.name)) is None else t.to(device=device, dtype=dtype)
            for f in dataclasses.fields(self)
        }
        return ProbeWeights(**moved)


def _check_weight_tensors(weights: ProbeWeights) -> None:
    tensors = [t for f in dataclasses.fields(weights) if (t := getattr(weights, f.name)) is not None]
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ValueError("ProbeWeights fields must be tensors (use ProbeWeights.from_tensors for lists or arrays)")
    if len({t.device for t in tensors}) != 1 or len({t.dtype for t in tensors}) != 1:
        raise ValueError("ProbeWeights tensors must share one device and one dtype (use .to(device, dtype))")
    if weights.mean.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"ProbeWeights dtype must be bfloat16, float16 or float32, not {weights.mean.dtype}")
    h = weights.mean.shape[0] if weights.mean.dim() == 1 else -1
    if h < 1 or weights.scale.shape != (h,):
        raise ValueError(
            f"ProbeWeights.mean and .scale must both be (H,) vectors; got "
            f"{tuple(weights.mean.shape)} and {tuple(weights.scale.shape)}"
        )
    if (weights.w2 is None) != (weights.b2 is None):
        raise ValueError("ProbeWeights.w2 and .b2 go together: both for an MLP probe, neither for a linear one")
    if weights.w2 is None:
        expected = {"w1": (h,), "b1": ()}
    else:
        width = weights.w2.shape[0] if weights.w2.dim() == 1 else -1
        expected = {"w1": (h, width), "b1": (width,), "w2": (width,), "b2": ()}
    for name, shape in expected.items():
        if tuple(getattr(weights, name).shape) != shape or min(shape, default=1) < 1:
            raise ValueError(
                f"ProbeWeights.{name} must have shape {shape} for hidden size {h}; "
                f"got {tuple(getattr(weights, name).shape)}"
            )


# ----------------------------------------------------------------------------------------------------------
# Kernel. Grid (row blocks, hidden splits): each program sums z @ w1 over its slice of the hidden axis for
# BLOCK_N gathered rows. With several splits (small batches, where row blocks alone would leave most of the
# GPU idle) the partial sums go through a scratch buffer and the last split of a row block to arrive adds
# them up in split order, so the result does not depend on arrival order, and finishes the rows.
# ----------------------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["n_rows", "batch"])  # they change every step: no recompiles
def _probe_score_kernel(
    hidden_ptr,
    rows_ptr,
    thresholds_ptr,  # (B, H) strided, (N,), (N,) fp32
    mean_ptr,
    scale_ptr,
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,  # ProbeWeights, contiguous
    scores_ptr,
    exits_ptr,  # (N,) fp32, (N,) uint8 (a bool tensor's bytes)
    partials_ptr,
    tickets_ptr,  # (splits, N, max(W, 1)) fp32 scratch, (row blocks,) int32 zeros
    n_rows,
    batch,
    hidden_size,
    stride_row,
    stride_col,
    split_size,
    WIDTH: tl.constexpr,
    BLOCK_W: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_H: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    in_batch = offs_n < n_rows
    rows = tl.load(rows_ptr + offs_n, mask=in_batch, other=0).to(tl.int64)
    # Row indices on the GPU are not range-checked on the host (that would sync); they read nothing and score NaN.
    readable = in_batch & (rows >= 0) & (rows < batch)
    h_lo = pid_s * split_size
    h_hi = tl.minimum(h_lo + split_size, hidden_size)
    row_ptrs = hidden_ptr + rows * stride_row
    # z @ w1 over this program's hidden columns [h_lo, h_hi): (BLOCK_N,) for a linear probe, (BLOCK_N, BLOCK_W)
    # for an MLP.
    if WIDTH == 0:
        acc = tl.zeros((BLOCK_N,), tl.float32)
    else:
        acc = tl.zeros((BLOCK_N, BLOCK_W), tl.float32)
    offs_w = tl.arange(0, BLOCK_W)
    for h0 in range(h_lo, h_hi, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)  # (BLOCK_H,)
        in_h = offs_h < h_hi
        x = tl.load(
            row_ptrs[:, None] + offs_h[None, :] * stride_col, mask=readable[:, None] & in_h[None, :], other=0.0
        )  # (BLOCK_N, BLOCK_H)
        mean = tl.load(mean_ptr + offs_h, mask=in_h, other=0.0).to(tl.float32)
        scale = tl.load(scale_ptr + offs_h, mask=in_h, other=1.0).to(tl.float32)
        z = (x.to(tl.float32) - mean[None, :]) / scale[None, :]  # (BLOCK_N, BLOCK_H), 0 in masked columns
        if WIDTH == 0:
            w = tl.load(w1_ptr + offs_h, mask=in_h, other=0.0).to(tl.float32)
            acc += tl.sum(z * w[None, :], axis=1)
        else:
            w = tl.load(
                w1_ptr + offs_h[:, None] * WIDTH + offs_w[None, :],
                mask=in_h[:, None] & (offs_w[None, :] < WIDTH),
                other=0.0,
            )  # (BLOCK_H, BLOCK_W)
            if DOT_F32:  # fp32 weights, or the interpreter, whose bf16 tl.dot is wrong (docs/platform-notes.md)
                acc = tl.dot(z, w.to(tl.float32), acc)
            else:
                acc = tl.dot(z.to(w.dtype), w, acc)
    is_last = pid_s == 0
    if tl.num_programs(1) > 1:
        acc, is_last = _combine_splits(
            acc, partials_ptr, tickets_ptr + pid_n, pid_s, n_rows, offs_n, in_batch, WIDTH, BLOCK_W
        )
    if is_last:
        logits = _probe_logits(acc, b1_ptr, w2_ptr, b2_ptr, WIDTH, BLOCK_W)  # (BLOCK_N,)
        scores = tl.where(readable, tl.sigmoid(logits), float("nan"))
        thresholds = tl.load(thresholds_ptr + offs_n, mask=in_batch, other=0.0)
        tl.store(scores_ptr + offs_n, scores, mask=in_batch)
        tl.store(exits_ptr + offs_n, (scores >= thresholds).to(tl.uint8), mask=in_batch)


@triton.jit
def _combine_splits(
    acc, partials_ptr, ticket_ptr, pid_s, n_rows, offs_n, in_batch, WIDTH: tl.constexpr, BLOCK_W: tl.constexpr
):
    """Publish this split's partial sums; the last split of the row block to arrive returns their total."""
    if WIDTH == 0:
        offs = offs_n  # (BLOCK_N,)
        mask = in_batch
        split_stride = n_rows
    else:
        offs_w = tl.arange(0, BLOCK_W)
        offs = offs_n[:, None] * WIDTH + offs_w[None, :]  # (BLOCK_N, BLOCK_W)
        mask = in_batch[:, None] & (offs_w[None, :] < WIDTH)
        split_stride = n_rows * WIDTH
    tl.store(partials_ptr + pid_s * split_stride + offs, acc, mask=mask)
    tl.debug_barrier()  # all threads' stores are issued before the release below publishes them
    ticket = tl.atomic_add(ticket_ptr, 1, sem="acq_rel")
    is_last = ticket == tl.num_programs(1) - 1
    if is_last:
        acc = tl.zeros_like(acc)
        for split in range(0, tl.num_programs(1)):
            acc += tl.load(partials_ptr + split * split_stride + offs, mask=mask, other=0.0, cache_modifier=".cg")
        tl.store(ticket_ptr, 0)  # every split has arrived: leave the ticket zeroed for the next launch
    return acc, is_last


@triton.jit
def _probe_logits(acc, b1_ptr, w2_ptr, b2_ptr, WIDTH: tl.constexpr, BLOCK_W: tl.constexpr):
    """The probe's logits from the summed z @ w1: add b1 (linear), or relu(. + b1) @ w2 + b2 (MLP)."""
    if WIDTH == 0:
        logits = acc + tl.load(b1_ptr).to(tl.float32)
    else:
        offs_w = tl.arange(0, BLOCK_W)
        in_w = offs_w < WIDTH
        b1 = tl.load(b1_ptr + offs_w, mask=in_w, other=0.0).to(tl.float32)
        w2 = tl.load(w2_ptr + offs_w, mask=in_w, other=0.0).to(tl.float32)
        activations = tl.maximum(acc + b1[None, :], 0.0)  # (BLOCK_N, BLOCK_W)
        logits = tl.sum(activations * w2[None, :], axis=1) + tl.load(b2_ptr).to(tl.float32)
    return logits


# ----------------------------------------------------------------------------------------------------------
# Validating wrapper, launch geometry and tuning.
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """Launch geometry: rows per program, hidden columns per tile, requested splits of the hidden axis."""

    block_n: int
    block_h: int
    splits: int = 1
    num_warps: int = 4


def probe_score_triton(hidden, rows, weights, thresholds, *, config: KernelConfig | None = None):
    """The fused kernel behind input validation. `config` fixes the launch geometry (tuned on GPU if None)."""
    thresholds = _check_inputs(hidden, rows, weights, thresholds)
    if not (hidden.is_cuda or kernel_is_interpreted()):
        raise ValueError(
            "the Triton backend needs CUDA tensors, or TRITON_INTERPRET=1 set before triton is "
            "imported; on CPU use backend='torch'"
        )
    n = rows.shape[0]
    scores = torch.empty(n, dtype=torch.float32, device=hidden.device)  # (N,)
    exits = torch.empty(n, dtype=torch.bool, device=hidden.device)  # (N,)
    if n == 0:
        return scores, exits
    launch = functools.partial(_launch, hidden, rows, weights, thresholds, scores, exits)
    launch(config or _choose_config(hidden, n, weights, launch))
    return scores, exits


def kernel_is_interpreted() -> bool:
    """True in a process that imported triton under TRITON_INTERPRET=1 (see the module docstring)."""
    return not isinstance(_probe_score_kernel, triton.runtime.JITFunction)


def _launch(hidden, rows, weights, thresholds, scores, exits, config: KernelConfig) -> None:
    n, h = rows.shape[0], hidden.shape[1]
    split_size = triton.cdiv(triton.cdiv(h, config.splits), config.block_h) * config.block_h
    splits = triton.cdiv(h, split_size)
    row_blocks = triton.cdiv(n, config.block_n)
    partials, tickets = _scratch(hidden.device, splits * n * max(weights.width, 1) if splits > 1 else 0, row_blocks)
    mlp = weights.width > 0
    _probe_score_kernel[(row_blocks, splits)](
        hidden,
        rows,
        thresholds,
        weights.mean,
        weights.scale,
        weights.w1,
        weights.b1,
        weights.w2 if mlp else weights.b1,
        weights.b2 if mlp else weights.b1,  # unread by a linear probe
        scores,
        exits.view(torch.uint8),
        partials,
        tickets,
        n,
        hidden.shape[0],
        h,
        hidden.stride(0),
        hidden.stride(1),
        split_size,
        WIDTH=weights.width,
        BLOCK_W=_block_w(weights.width),
        BLOCK_N=config.block_n,
        BLOCK_H=config.block_h,
        DOT_F32=weights.dtype == torch.float32 or kernel_is_interpreted(),
        num_warps=config.num_warps,
        enable_fp_fusion=False,
    )


def _block_w(width: int) -> int:
    return max(16, triton.next_power_of_2(width))  # tl.dot wants every tile side >= 16


_SCRATCH: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _scratch(device: torch.device, n_partials: int, n_tickets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-device buffers reused across launches, so that a launch allocates and clears nothing.

    Partial sums are written before they are read; tickets are zero between launches (the last split
    re-zeroes its own). Launches on one stream at a time per device: concurrent streams would share tickets.
    """
    partials, tickets = _SCRATCH.get(device, (None, None))
    if partials is None or partials.numel() < n_partials:
        partials = torch.empty(max(n_partials, 1), dtype=torch.float32, device=device)
    if tickets is None or tickets.numel() < n_tickets:
        tickets = torch.zeros(max(n_tickets, 1), dtype=torch.int32, device=device)
    _SCRATCH[device] = (partials, tickets)
    return partials, tickets


def _choose_config(hidden, n, weights, launch) -> KernelConfig:
    """The interpreter's fixed choice, or on GPU the fastest candidate, timed once per shape class."""
    if kernel_is_interpreted():
        return _interpreter_config(n, hidden.shape[1], weights.width)
    n_bucket = min(triton.next_power_of_2(n), 1024)  # batch sizes change every step; tune per power of two
    key = (hidden.device, hidden.dtype, weights.dtype, weights.width, hidden.shape[1], n_bucket)
    if key not in _TUNED:
        candidates = gpu_candidates(n, hidden.shape[1], weights.width, _sm_count(hidden.device))
        _TUNED[key] = min(candidates, key=lambda config: _time_ms(launch, config))
    return _TUNED[key]


_TUNED: dict[tuple, KernelConfig] = {}


def _time_ms(launch, config: KernelConfig) -> float:
    try:
        return triton.testing.do_bench(lambda: launch(config), warmup=5, rep=20, return_mode="median")
    except OutOfResources:  # e.g. a tile that fits an H100's shared memory but not an A100's
        return float("inf")


def _interpreter_config(n: int, hidden_size: int, width: int) -> KernelConfig:
    """One split and large tiles: every program and tile is a Python-level step in the interpreter."""
    block_n = min(64, max(16 if width else 1, triton.next_power_of_2(n)))
    return KernelConfig(block_n, min(triton.next_power_of_2(hidden_size), 512 if width else 2048), splits=1)


_MAX_SPLITS = 32  # the last split of a row block reads every split's partials, one after another


def gpu_candidates(n: int, hidden_size: int, width: int, sm_count: int) -> list[KernelConfig]:
    """Configurations to time on GPU: tiles that fit registers, and splits that fill one or two waves."""
    block_ns, block_hs = ((1, 4, 16), (256, 512, 1024)) if width == 0 else ((16, 32, 64), (32, 64, 128))
    widest = _block_w(width) if width else 1
    configs = set()
    for block_n in (b for b in block_ns if b <= max(block_ns[0], triton.next_power_of_2(n))):
        for block_h in (b for b in block_hs if b * max(block_n, widest) <= 16384):
            row_blocks, tiles = triton.cdiv(n, block_n), triton.cdiv(hidden_size, block_h)
            warps = 4 if block_h * max(block_n, widest) <= 4096 else 8
            for programs in (1, sm_count, 2 * sm_count):
                splits = min(tiles, _MAX_SPLITS, max(1, programs // row_blocks))
                configs.add(KernelConfig(block_n, block_h, splits, warps))
    return sorted(configs, key=dataclasses.astuple)


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _check_inputs(hidden, rows, weights, thresholds, *, range_check: bool = True) -> torch.Tensor:
    """Raise ValueError on anything the kernel cannot score; return the thresholds as float32.
    range_check=False leaves the host-side row range check to the caller (the numpy path does it in numpy)."""
    if not all(isinstance(t, torch.Tensor) for t in (hidden, rows, thresholds)):
        raise ValueError("hidden, rows and thresholds must be torch tensors")
    if not isinstance(weights, ProbeWeights):
        raise ValueError(f"weights must be ProbeWeights, not {type(weights).__name__}")
    if hidden.dim() != 2 or hidden.dtype not in _FLOAT_DTYPES:
        raise ValueError(
            f"hidden must be a (batch, hidden_size) bfloat16, float16 or float32 tensor; "
            f"got {hidden.dtype} of shape {tuple(hidden.shape)}"
        )
    if rows.dim() != 1 or rows.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"rows must be a 1-D int32 or int64 tensor; got {rows.dtype} of shape {tuple(rows.shape)}")
    if thresholds.shape != rows.shape or not thresholds.is_floating_point():
        raise ValueError(
            f"thresholds must be a float tensor shaped like rows {tuple(rows.shape)}; "
            f"got {thresholds.dtype} of shape {tuple(thresholds.shape)}"
        )
    if weights.hidden_size != hidden.shape[1]:
        raise ValueError(
            f"the probe expects hidden size {weights.hidden_size}, the hidden states have {hidden.shape[1]}"
        )
    if any(t.device != hidden.device for t in (rows, thresholds, weights.mean)):
        raise ValueError(f"rows, thresholds and weights must be on hidden's device {hidden.device}")
    if range_check and rows.device.type == "cpu" and rows.numel():  # free on the host; on a device, a sync
        _check_row_range(*(int(bound) for bound in torch.aminmax(rows)), hidden.shape[0])
    return thresholds.to(torch.float32) if range_check else thresholds


def _check_row_range(low: int, high: int, batch: int) -> None:
    if low < 0 or high >= batch:
        raise ValueError(f"rows must index hidden's {batch} rows; got values from {low} to {high}")


# ----------------------------------------------------------------------------------------------------------
# Torch reference: the same function, plain and lean (it is the CPU path of the decode step).
# ----------------------------------------------------------------------------------------------------------


def score_boundary_rows_reference(hidden, rows, weights, thresholds):
    """Plain torch version of the kernel: same arguments, same results (scores to fp32 rounding)."""
    thresholds = _check_inputs(hidden, rows, weights, thresholds)
    return reference_math(hidden, rows, weights, thresholds)


def reference_math(hidden, rows, weights: ProbeWeights, thresholds):
    """The reference without validation (what the benchmark compiles), accumulating in fp32."""
    on_device = rows.device.type != "cpu"
    if on_device:  # not range-checked on the host, as in the kernel: unreadable rows score NaN
        readable = (rows >= 0) & (rows < hidden.shape[0])
        rows = torch.where(readable, rows, 0)
    z = (hidden.index_select(0, rows).float() - weights.mean.float()) / weights.scale.float()  # (N, H)
    # Scalar biases are expanded, not broadcast: addmv with a 0-d bias returns a 0-d tensor when N is 0.
    if weights.width == 0:
        logits = torch.addmv(weights.b1.float().expand(len(z)), z, weights.w1.float())  # (N,)
    else:
        activations = torch.addmm(weights.b1.float(), z, weights.w1.float()).relu_()  # (N, W)
        logits = torch.addmv(weights.b2.float().expand(len(z)), activations, weights.w2.float())  # (N,)
    scores = torch.sigmoid(logits)
    if on_device:
        scores = scores.masked_fill(~readable, float("nan"))
    return scores, scores >= thresholds


def score_boundary_rows_numpy(hidden, rows, weights, thresholds):
    """The reference's function in numpy, for CPU tensors: the dispatcher's face of `HostProbe`.
    Same arguments and results as the reference (scores to fp32 rounding)."""
    _check_inputs(hidden, rows, weights, thresholds, range_check=False)
    if hidden.device.type != "cpu":
        raise ValueError("the numpy backend scores CPU tensors only; use backend='auto'")
    index = rows.tolist()
    if index:
        _check_row_range(min(index), max(index), hidden.shape[0])
    scores = weights.host.scores(hidden, index)
    exits = [score >= threshold for score, threshold in zip(scores, float32_values(thresholds.tolist()))]
    return torch.tensor(scores, dtype=torch.float32), torch.tensor(exits, dtype=torch.bool)


@dataclasses.dataclass(frozen=True, eq=False)
class HostProbe:
    """The probe on CPU tensors with as few library calls as the math allows: what a CPU engine's decode step
    runs for its few boundary rows (through `score_boundary_rows_numpy`, or directly from the probe runtime).

    Why so frugal: in vLLM's CPU worker the scoring runs once per step, right after the forward pass, and each
    numpy or torch call then costs about ten times what it does in a warm loop (cold caches; the same calls
    repeated in the worker run at full speed). Measured there per step: the tensor's numpy view 16 us, a
    fancy-indexed gather of the rows 34 us against 5 us for plain row views, a float32 x float64 matmul 35 us
    against 23 us for float32 row dots, a torch.mm over the whole batch 53 us. So the standardisation is
    folded into the first layer (x @ (w1 / scale) + b1 - (mean / scale) @ w1, computed in float64, stored in
    float32), each row is a view and one dot, and the rest (bias, ReLU, second layer, sigmoid, rounding the
    scores to fp32 like every other backend) is plain Python over a few numbers.
    """

    w1: np.ndarray  # (H,) or (H, W) float32, standardisation folded in
    b1: float | list[float]  # () or (W,)
    w2: list[float] | None  # (W,) MLP only
    b2: float | None

    @classmethod
    def from_weights(cls, weights: ProbeWeights) -> HostProbe:
        as64 = {
            f.name: None if (t := getattr(weights, f.name)) is None else t.detach().cpu().double().numpy()
            for f in dataclasses.fields(weights)
        }
        w1 = as64["w1"] / (as64["scale"][:, None] if as64["w1"].ndim == 2 else as64["scale"])
        b1 = as64["b1"] - (as64["mean"] / as64["scale"]) @ as64["w1"]
        w2 = None if as64["w2"] is None else as64["w2"].tolist()
        return cls(
            np.ascontiguousarray(w1, dtype=np.float32),
            b1.tolist(),
            w2,
            None if as64["b2"] is None else float(as64["b2"]),
        )

    def scores(self, hidden: torch.Tensor, rows: list[int]) -> list[float]:
        """Sigmoid scores of hidden[rows] (a CPU tensor of any float dtype; rows already range-checked)."""
        if not rows:
            return []
        if hidden.dtype != torch.float32:  # numpy has no bfloat16: convert only the rows
            hidden, rows = hidden.detach()[rows].float(), range(len(rows))
        states = hidden.detach().numpy() if hidden.requires_grad else hidden.numpy()
        logits = []
        for row in rows:
            pre = np.dot(states[row], self.w1).tolist()  # a float (linear) or W floats (MLP)
            if self.w2 is None:
                logits.append(pre + self.b1)
            else:  # max(a, 0.0) is a ReLU that keeps NaN (max returns its first argument when none is larger)
                logits.append(math.fsum(w * max(a + b, 0.0) for w, a, b in zip(self.w2, pre, self.b1)) + self.b2)
        return float32_values([_sigmoid(logit) for logit in logits])


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    small = math.exp(logit)  # no overflow for very negative logits
    return small / (1.0 + small)


def float32_values(values: list[float]) -> list[float]:
    """Python floats rounded to float32, in one call (decisions compare fp32 scores with fp32 thresholds)."""
    return array.array("f", values).tolist()


# ----------------------------------------------------------------------------------------------------------
# Dispatcher.
# ----------------------------------------------------------------------------------------------------------


def score_boundary_rows(hidden, rows, weights, thresholds, backend: str = "auto"):
    """Probe scores (N,) fp32 and exit decisions (N,) bool (score >= threshold) for hidden[rows].

    hidden (B, H) bf16/fp16/fp32; rows (N,) int32/int64, repeats and any order allowed; thresholds (N,)
    float; weights a ProbeWeights of hidden size H; all on hidden's device. Bad inputs raise ValueError.
    Rows already on a GPU are not range-checked (that would sync the step): an out-of-range row scores NaN
    and does not exit. backend: "triton" (the fused kernel), "torch" (the reference) or "auto": Triton for
    CUDA tensors and in an interpreted process (TRITON_INTERPRET=1 at import), numpy for other CPU tensors,
    the torch reference otherwise ("torch" and "numpy" name those paths directly).
    On GPU the first call per (dtypes, width, hidden size, batch rounded up to a power of two) times the
    launch candidates, once per process; the kernel's scratch buffers assume one stream per device.
    """
    return _BACKEND_FUNCTIONS[resolve_backend(backend, hidden)](hidden, rows, weights, thresholds)


def resolve_backend(backend: str, hidden) -> str:
    """The concrete backend ("triton" or "torch") that `backend` means for this hidden-state tensor."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend != "auto":
        return backend
    on_cuda = isinstance(hidden, torch.Tensor) and hidden.is_cuda
    if on_cuda or kernel_is_interpreted():
        return "triton"
    on_host = isinstance(hidden, torch.Tensor) and hidden.device.type == "cpu"
    return "numpy" if on_host else "torch"


_BACKEND_FUNCTIONS = {
    "triton": probe_score_triton,
    "torch": score_boundary_rows_reference,
    "numpy": score_boundary_rows_numpy,
}
