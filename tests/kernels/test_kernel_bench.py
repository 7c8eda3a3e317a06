"""`probexit bench kernel` (benchmarks/kernel.py) on tiny shapes: the JSON it writes and its command line."""

from __future__ import annotations

import json

import pytest
import torch

from probexit.benchmarks.kernel import Shape, bytes_moved, make_inputs, peak_gbps_for, run_kernel_benchmark
from probexit.cli.main import main
from probexit.kernels.probe_score import score_boundary_rows

TINY = [Shape(2, 64, 0), Shape(3, 96, 16), Shape(3, 96, 16, features=9)]

DEVICE_NAMES = [
    pytest.param("NVIDIA H100 80GB HBM3", 3350.0, id="h100-sxm"),
    pytest.param("NVIDIA H100 PCIe", 2000.0, id="h100-pcie"),
    pytest.param("NVIDIA H100 NVL", 3900.0, id="h100-nvl"),
    pytest.param("NVIDIA H200", 4800.0, id="h200"),
    pytest.param("NVIDIA A100-SXM4-80GB", 2039.0, id="a100-sxm-80gb"),
    pytest.param("NVIDIA A100 80GB PCIe", 1935.0, id="a100-pcie-80gb"),
    pytest.param("NVIDIA A100-SXM4-40GB", 1555.0, id="a100-40gb"),
    pytest.param("NVIDIA GeForce RTX 4090", None, id="unknown"),
]


@pytest.mark.parametrize(("name", "gbps"), DEVICE_NAMES)
def test_peak_bandwidth_table(name, gbps):
    assert peak_gbps_for(name) == gbps


def test_bytes_moved_counts_rows_probe_and_per_row_scalars():
    # 3 rows of 96 bf16 values plus index, threshold, score, exit; mean, scale, w1 (96x16), b1, w2, b2 in bf16.
    assert bytes_moved(Shape(3, 96, 16), torch.bfloat16) == 3 * (96 * 2 + 13) + (2 * 96 + 96 * 16 + 16 + 16 + 1) * 2
    # ... and 9 fp32 features per row, read through 9 more inputs of mean, scale and w1.
    with_features = 3 * (96 * 2 + 9 * 4 + 13) + (2 * 105 + 105 * 16 + 16 + 16 + 1) * 2
    assert bytes_moved(Shape(3, 96, 16, features=9), torch.bfloat16) == with_features


def test_cpu_report_times_torch_and_says_why_fused_is_missing(tmp_path):
    report = run_kernel_benchmark(tmp_path, TINY, repeats=2, compile_reference=False, device="cpu")
    assert json.loads((tmp_path / "kernel.json").read_text()) == report
    assert report["fused"]["timed"] is False and "no CUDA" in report["fused"]["reason"]
    assert report["numpy"]["timed"] and "HostProbe.scores" in report["numpy"]["how"]
    assert "goals" not in report  # a report states numbers
    shapes = [(r["batch"], r["hidden_size"], r["width"], r["features"]) for r in report["shapes"]]
    assert shapes == [(2, 64, 0, 0), (3, 96, 16, 0), (3, 96, 16, 9)]
    for record in report["shapes"]:
        assert record["fused_us"] is None and record["compile_us"] is None
        assert record["eager_us"] > 0 and record["numpy_us"] > 0


def test_inputs_are_what_the_dispatcher_takes():
    hidden, rows, weights, thresholds, features = make_inputs(Shape(3, 96, 16, features=9), torch.bfloat16, "cpu")
    assert (weights.hidden_size, weights.n_features, features.shape, features.dtype) == (96, 9, (3, 9), torch.float32)
    assert make_inputs(Shape(3, 96, 16), torch.bfloat16, "cpu")[-1] is None
    numpy_scores, _ = score_boundary_rows(hidden, rows, weights, thresholds, features, backend="numpy")
    torch_scores, _ = score_boundary_rows(hidden, rows, weights, thresholds, features, backend="torch")
    torch.testing.assert_close(numpy_scores, torch_scores, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_cpu_report_times_torch_compile(tmp_path):
    report = run_kernel_benchmark(tmp_path, TINY[1:], repeats=2, device="cpu")
    assert report["compile"]["timed"] and report["shapes"][0]["compile_us"] > 0


@pytest.mark.gpu
def test_gpu_report_times_the_kernel(tmp_path):
    report = run_kernel_benchmark(
        tmp_path,
        [Shape(8, 1536, 32), Shape(256, 1536, 0), Shape(8, 192, 32, features=9)],
        rep_ms=10,
        compile_reference=False,
        peak_gbps=1000.0,
    )
    assert report["fused"]["timed"] and report["peak_source"] == "--peak-gbps"
    assert all(r["fused_us"] > 0 and r["fused_peak_fraction"] > 0 for r in report["shapes"])
    assert not report["numpy"]["timed"] and all(r["numpy_us"] is None for r in report["shapes"])


def test_command_line_writes_the_report(tmp_path, capsys):
    code = main(
        [
            "bench",
            "kernel",
            "--out",
            str(tmp_path / "out"),
            "--batches",
            "2",
            "--hidden-sizes",
            "64",
            "--widths",
            "0",
            "16",
            "--features",
            "0",
            "3",
            "--repeats",
            "1",
            "--no-compile",
        ]
    )
    assert code == 0
    assert len(json.loads((tmp_path / "out" / "kernel.json").read_text())["shapes"]) == 4
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--repeats", "0"], id="zero-repeats"),
        pytest.param(["--peak-gbps", "-1"], id="negative-peak"),
        pytest.param(["--widths", "-4"], id="negative-width"),
        pytest.param(["--features", "0", "-1"], id="negative-features"),
    ],
)
def test_command_line_rejects_bad_numbers(tmp_path, capsys, argv):
    assert main(["bench", "kernel", "--out", str(tmp_path), *argv]) == 2
    assert "probexit: error:" in capsys.readouterr().err


def test_command_line_needs_out():
    with pytest.raises(SystemExit):
        main(["bench", "kernel"])


def test_the_default_shapes_include_the_embedded_probes_own(tmp_path):
    """The default feature counts name the tiny world's probe inputs without importing the build: held equal here,
    to the build's setting and to the probe that is served."""
    from probexit.assets import default_paths
    from probexit.benchmarks.settings import EMBEDDED_PROBE_FEATURES, KernelSettings
    from probexit.probes.features import feature_count
    from probexit.probes.probe import Probe
    from probexit.training.tinyworld.build import BuildConfig

    served = Probe.load(default_paths().probe).config
    assert EMBEDDED_PROBE_FEATURES == feature_count(BuildConfig().probe_inputs) == feature_count(served.inputs)
    settings = KernelSettings(out=tmp_path)
    assert EMBEDDED_PROBE_FEATURES in settings.features
    assert served.hidden_size in settings.hidden_sizes and served.width in settings.widths
