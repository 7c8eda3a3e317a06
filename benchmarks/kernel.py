"""`probexit bench kernel`: the fused probe kernel against torch eager and torch.compile of the reference.

For every shape (rows scored, hidden size, probe width, features per row beside the hidden state) it records
the median microseconds of the three paths and the memory bandwidth the fused kernel achieves, as GB/s and as
a fraction of the device's peak. Every row of the step is scored (the heaviest decode step). Without CUDA the
fused kernel is not timed (the JSON says why) and the numpy host path is, as a CPU engine's decode step
calls it: `HostProbe.scores` on the step's hidden states with the rows and features as Python lists.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import triton
import triton.testing

from probexit.benchmarks.settings import KernelSettings
from probexit.kernels.reference import reference_math, score_boundary_rows_reference
from probexit.kernels.triton_kernel import probe_score_triton
from probexit.kernels.weights import ProbeWeights

# Peak HBM bandwidth in GB/s by device name: the first entry whose words all appear in the name wins.
PEAK_GBPS = (
    (("H200",), 4800.0),
    (("H100", "NVL"), 3900.0),
    (("H100", "PCIE"), 2000.0),
    (("H100",), 3350.0),  # SXM, "NVIDIA H100 80GB HBM3"
    (("A100", "80GB", "PCIE"), 1935.0),
    (("A100", "80GB"), 2039.0),
    (("A100",), 1555.0),  # the 40 GB parts
)


@dataclasses.dataclass(frozen=True)
class Shape:
    batch: int  # rows in the step, all of them scored
    hidden_size: int
    width: int  # 0: linear probe
    features: int = 0  # K: numbers per row the probe reads beside the hidden state


def shapes_of(settings: KernelSettings) -> list[Shape]:
    """Every combination of the settings' batches, hidden sizes, widths and feature counts."""
    return [
        Shape(b, h, w, k)
        for b in settings.batches
        for h in settings.hidden_sizes
        for w in settings.widths
        for k in settings.features
    ]


def peak_gbps_for(device_name: str) -> float | None:
    name = device_name.upper()
    return next((gbps for words, gbps in PEAK_GBPS if all(word in name for word in words)), None)


def run_kernel_benchmark(
    out_dir: Path,
    shapes: Iterable[Shape],
    *,
    dtype=torch.bfloat16,
    repeats: int = 20,
    rep_ms: int = 100,
    peak_gbps: float | None = None,
    compile_reference: bool = True,
    device: str | None = None,
) -> dict:
    """Time every shape, write `out_dir/kernel.json` and return the report."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    report = _environment(device, dtype, repeats, rep_ms, peak_gbps)
    timer = _gpu_timer(rep_ms) if device.type == "cuda" else _cpu_timer(repeats)
    compiled = _Compiled(reference_math) if compile_reference else None
    how = "torch.compile(reference_math, dynamic=True): the reference without its input checks"
    report["compile"] = {"timed": compiled is not None, "how": how if compiled else "skipped (--no-compile)"}
    report["shapes"] = [_bench_shape(shape, dtype, device, timer, compiled, report["peak_gbps"]) for shape in shapes]
    if compiled is not None and compiled.error:
        report["compile"].update(timed=False, error=compiled.error)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "kernel.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _environment(device: torch.device, dtype, repeats: int, rep_ms: int, peak_gbps: float | None) -> dict:
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    table_peak = peak_gbps_for(name) if cuda else None
    return {
        "suite": "kernel",
        "device": name,
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cpu_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "timing": (
            f"triton.testing.do_bench median, {rep_ms} ms per measurement"
            if cuda
            else f"median of {repeats} calls after 3 warm-up calls, time.perf_counter"
        ),
        "peak_gbps": peak_gbps or table_peak,
        "peak_source": "--peak-gbps" if peak_gbps else ("device table" if table_peak else None),
        "fused": {
            "timed": cuda,
            "reason": None
            if cuda
            else "no CUDA device: the Triton kernel runs here only in its interpreter, which is not timed",
        },
        "numpy": {
            "timed": not cuda,
            "how": "HostProbe.scores(hidden, rows, features) with rows and features as Python lists, as a CPU "
            "engine's decode step calls it"
            if not cuda
            else "not timed: the numpy path scores CPU tensors only",
        },
        "features_dtype": "float32",
    }


def _gpu_timer(rep_ms: int) -> Callable[[Callable], float]:
    return lambda fn: triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median") * 1e3


def _cpu_timer(repeats: int) -> Callable[[Callable], float]:
    def median_us(fn: Callable) -> float:
        for _ in range(3):
            fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e6

    return median_us


class _Compiled:
    """torch.compile of the reference; the first failure (no C++ compiler, say) is kept and later calls skip."""

    def __init__(self, fn):
        self.fn, self.error = torch.compile(fn, dynamic=True), None

    def time(self, timer, inputs) -> float | None:
        if self.error:
            return None
        try:
            return timer(lambda: self.fn(*inputs))
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
            return None


def _bench_shape(shape: Shape, dtype, device, timer, compiled: _Compiled | None, peak_gbps) -> dict:
    inputs = make_inputs(shape, dtype, device)
    fused_us = timer(lambda: probe_score_triton(*inputs)) if device.type == "cuda" else None
    eager_us = timer(lambda: score_boundary_rows_reference(*inputs))
    compile_us = compiled.time(timer, inputs) if compiled else None
    numpy_us = _time_host_path(timer, *inputs) if device.type == "cpu" else None
    moved = bytes_moved(shape, dtype)
    fused_gbps = moved / fused_us / 1e3 if fused_us else None
    return {
        **dataclasses.asdict(shape),
        "bytes": moved,
        "fused_us": fused_us,
        "eager_us": eager_us,
        "compile_us": compile_us,
        "numpy_us": numpy_us,
        "fused_gbps": fused_gbps,
        "eager_gbps": moved / eager_us / 1e3,
        "fused_peak_fraction": fused_gbps / peak_gbps if fused_gbps and peak_gbps else None,
        "speedup_vs_eager": eager_us / fused_us if fused_us else None,
        "speedup_vs_compile": compile_us / fused_us if fused_us and compile_us else None,
    }


def _time_host_path(timer, hidden, rows, weights, thresholds, features) -> float:
    """The numpy path as the decode step runs it: lists in, a list of scores and Python decisions out."""
    host, index, threshold_values = weights.host, rows.tolist(), thresholds.tolist()
    feature_values = features.tolist() if features is not None else None

    def score_step():
        scores = host.scores(hidden, index, feature_values)
        return [score >= threshold for score, threshold in zip(scores, threshold_values)]

    return timer(score_step)


def make_inputs(shape: Shape, dtype, device) -> tuple:
    """hidden (B, H), rows (B,) int32 in random order, a random probe over H + K inputs, thresholds 0.5, and
    features (B, K) fp32 (None when K is 0): what `score_boundary_rows` takes."""
    g = torch.Generator().manual_seed(shape.batch * 7919 + shape.hidden_size + shape.width + 31 * shape.features)
    h, w, k = shape.hidden_size, shape.width, shape.features
    w1 = torch.randn((h + k, w) if w else (h + k,), generator=g) / (h + k) ** 0.5
    tail = (torch.zeros(w), torch.randn(w, generator=g) / w**0.5, 0.0) if w else (0.0,)
    weights = ProbeWeights.from_tensors(
        torch.randn(h + k, generator=g),
        1 + torch.rand(h + k, generator=g),
        w1,
        *tail,
        n_features=k,
        device=device,
        dtype=dtype,
    )
    hidden = torch.randn(shape.batch, h, generator=g).to(device=device, dtype=dtype)
    rows = torch.randperm(shape.batch, generator=g).to(device=device, dtype=torch.int32)
    features = torch.randn(shape.batch, k, generator=g).to(device) if k else None
    return hidden, rows, weights, torch.full((shape.batch,), 0.5, device=device), features


def bytes_moved(shape: Shape, dtype) -> int:
    """Bytes the fused kernel must move at least: the gathered rows, the probe once, the per-row scalars and
    fp32 features."""
    element = torch.finfo(dtype).bits // 8
    d, w = shape.hidden_size + shape.features, shape.width
    probe = 2 * d + (d * w + 2 * w + 1 if w else d + 1)  # mean, scale, then w1, b1 (, w2, b2)
    per_row = shape.hidden_size * element + 4 * shape.features + 4 + 4 + 4 + 1  # + index, threshold, score, exit
    return shape.batch * per_row + probe * element


def summary_lines(report: dict) -> list[str]:
    """A table for the terminal: one line per shape."""

    def us(value):
        return f"{value:9.1f}" if value is not None else "        -"

    lines = [
        f"{report['device']} ({report['dtype']}): median microseconds",
        " batch  hidden  width  features     fused     eager   compile     numpy  speedup  peak",
    ]
    for r in report["shapes"]:
        speedup = f"{r['speedup_vs_eager']:7.2f}x" if r["speedup_vs_eager"] else "       -"
        peak = f"{r['fused_peak_fraction']:5.0%}" if r["fused_peak_fraction"] else "    -"
        lines.append(
            f"{r['batch']:6d} {r['hidden_size']:7d} {r['width']:6d} {r['features']:9d} {us(r['fused_us'])} "
            f"{us(r['eager_us'])} {us(r['compile_us'])} {us(r['numpy_us'])} {speedup} {peak}"
        )
    return lines
