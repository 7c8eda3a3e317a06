"""The fused Triton kernel that scores the boundary rows of one decode step, its validating wrapper, launch
geometry and autotuning (GPU candidates timed once per shape class; one fixed choice when interpreted).

Importing this module imports Triton; only the dispatcher (`probe_score`) and the kernel tests do, and only
when the kernel is wanted (see `probe_score` for when the interpreter runs it on CPU).
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import triton
import triton.language as tl
import triton.testing
from triton.runtime.errors import OutOfResources

from probexit.kernels.weights import check_inputs

# ----------------------------------------------------------------------------------------------------------
# Kernel. Grid (row blocks, hidden splits): each program sums z @ w1 over its slice of the hidden axis for
# BLOCK_N gathered rows. With several splits (small batches, where row blocks alone would leave most of the
# GPU idle) the partial sums go through a scratch buffer and the last split of a row block to arrive adds
# them up in split order, so the result does not depend on arrival order, and finishes the rows. The
# finishing program (the only one without splits) also adds the rows' K features, so they count once.
# ----------------------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["n_rows", "batch"])  # they change every step: no recompiles
def _probe_score_kernel(
    hidden_ptr,
    rows_ptr,
    thresholds_ptr,  # (B, H) strided, (N,), (N,) fp32
    features_ptr,  # (N, K) strided (unread when K is 0)
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
    stride_feature_row,
    stride_feature_col,
    split_size,
    N_FEATURES: tl.constexpr,
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
        if N_FEATURES > 0:
            feature_ptrs = features_ptr + offs_n * stride_feature_row  # (BLOCK_N,) each row's first feature
            acc = _add_features(
                acc,
                feature_ptrs,
                stride_feature_col,
                in_batch,
                mean_ptr,
                scale_ptr,
                w1_ptr,
                hidden_size,
                N_FEATURES,
                WIDTH,
                BLOCK_W,
            )
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
def _add_features(
    acc,
    feature_ptrs,
    stride_feature_col,
    in_batch,
    mean_ptr,
    scale_ptr,
    w1_ptr,
    hidden_size,
    N_FEATURES: tl.constexpr,
    WIDTH: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """acc plus the rows' standardised features times w1's last K rows (inputs hidden_size + k), one feature at a
    time in fp32: K is a handful, too few for a dot tile."""
    offs_w = tl.arange(0, BLOCK_W)
    for k in tl.static_range(N_FEATURES):
        column = hidden_size + k  # the feature's place among the probe's inputs
        value = tl.load(feature_ptrs + k * stride_feature_col, mask=in_batch, other=0.0).to(tl.float32)
        z = (value - tl.load(mean_ptr + column).to(tl.float32)) / tl.load(scale_ptr + column).to(tl.float32)
        if WIDTH == 0:
            acc += z * tl.load(w1_ptr + column).to(tl.float32)
        else:
            w = tl.load(w1_ptr + column * WIDTH + offs_w, mask=offs_w < WIDTH, other=0.0).to(tl.float32)
            acc += z[:, None] * w[None, :]
    return acc


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


def probe_score_triton(hidden, rows, weights, thresholds, features=None, *, config: KernelConfig | None = None):
    """The fused kernel behind input validation. `config` fixes the launch geometry (tuned on GPU if None)."""
    thresholds = check_inputs(hidden, rows, weights, thresholds, features)
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
    launch = functools.partial(_launch, hidden, rows, weights, thresholds, features, scores, exits)
    launch(config or _choose_config(hidden, n, weights, launch))
    return scores, exits


def kernel_is_interpreted() -> bool:
    """True in a process that imported triton under TRITON_INTERPRET=1 (`probe_score` says why it is per process)."""
    return not isinstance(_probe_score_kernel, triton.runtime.JITFunction)


def _launch(hidden, rows, weights, thresholds, features, scores, exits, config: KernelConfig) -> None:
    n, h = rows.shape[0], hidden.shape[1]
    split_size = triton.cdiv(triton.cdiv(h, config.splits), config.block_h) * config.block_h
    splits = triton.cdiv(h, split_size)
    row_blocks = triton.cdiv(n, config.block_n)
    partials, tickets = _scratch(hidden.device, splits * n * max(weights.width, 1) if splits > 1 else 0, row_blocks)
    mlp, read_features = weights.width > 0, weights.n_features > 0
    _probe_score_kernel[(row_blocks, splits)](
        hidden,
        rows,
        thresholds,
        features if read_features else thresholds,  # unread without features
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
        *(features.stride() if read_features else (0, 0)),
        split_size,
        N_FEATURES=weights.n_features,
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
    key = (hidden.device, hidden.dtype, weights.dtype, weights.width, weights.n_features, hidden.shape[1], n_bucket)
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
