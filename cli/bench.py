"""`probexit bench savings|kernel|load`: benchmarks that write their numbers to JSON."""
from __future__ import annotations

import os
from pathlib import Path

from probexit.cli.errors import CLIError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks: savings, kernel, load")
    suites = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for name, help_text in (
        ("savings", "accuracy against thinking tokens, probe against peer policies"),
        ("kernel", "fused probe kernel against torch"),
        ("load", "concurrent streaming load on the server"),
    ):
        suite = suites.add_parser(name, help=help_text)
        suite.set_defaults(run=_not_yet)
    _add_kernel_arguments(suites.choices["kernel"])


def _not_yet(args) -> int:
    raise CLIError(f"`probexit bench {args.suite}` is not available yet")


def _add_kernel_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="writes DIR/kernel.json")
    parser.add_argument("--repeats", type=int, default=20, help="on CPU: timed calls per path and shape (median)")
    parser.add_argument("--rep-ms", type=int, default=100, help="on GPU: do_bench's milliseconds per measurement")
    parser.add_argument("--peak-gbps", type=float, help="peak memory bandwidth in GB/s (default: table by GPU name)")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16",
                        help="dtype of the hidden states and the probe")
    parser.add_argument("--batches", type=int, nargs="+", help="rows per step (default: 1 8 64 256)")
    parser.add_argument("--hidden-sizes", type=int, nargs="+", help="default: 1536 3584 4096 5120 8192")
    parser.add_argument("--widths", type=int, nargs="+", help="probe widths, 0 for linear (default: 0 32 256)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes on CPU)")
    parser.set_defaults(run=_run_kernel)


def _run_kernel(args) -> int:
    # Before torch starts OpenMP: spinning worker threads slow torch several-fold on shared cores (PLATFORM.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from probexit.benchmarks import kernel

    if args.repeats < 1 or args.rep_ms < 1 or (args.peak_gbps is not None and args.peak_gbps <= 0):
        raise CLIError("--repeats and --rep-ms must be at least 1, and --peak-gbps positive")
    sizes = [s for s in (args.batches, args.hidden_sizes, args.widths) if s]
    if any(value < 0 for values in sizes for value in values):
        raise CLIError("--batches, --hidden-sizes and --widths take non-negative integers")
    shapes = kernel.default_shapes(args.batches or kernel.BATCHES, args.hidden_sizes or kernel.HIDDEN_SIZES,
                                   args.widths or kernel.WIDTHS)
    report = kernel.run_kernel_benchmark(args.out, shapes, dtype=getattr(torch, args.dtype), repeats=args.repeats,
                                         rep_ms=args.rep_ms, peak_gbps=args.peak_gbps,
                                         compile_reference=not args.no_compile)
    print("\n".join(kernel.summary_lines(report)))
    print(f"wrote {args.out / 'kernel.json'}")
    return 0
