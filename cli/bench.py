"""`probexit bench savings|shadow|replay|kernel|load`: benchmarks that write their numbers to JSON."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from probexit.benchmarks import display_path
from probexit.cli.errors import CLIError
from probexit.engine.constants import EVAL_TEMPERATURE, EVAL_TOP_P
from probexit.server.config import API_KEY_ENV

NAME, HELP = "bench", "benchmarks: savings, shadow, replay, kernel, load"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(NAME, help=HELP)
    suites = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for name, help_text in (
        ("savings", "accuracy against thinking tokens, probe against peer policies"),
        ("shadow", "what early exit would save and change, from a server's shadow-mode metrics"),
        ("replay", "what early exit could save on recorded traces (no engine, no probe)"),
        ("kernel", "fused probe kernel against torch"),
        ("load", "concurrent streaming load on the server"),
    ):
        suite = suites.add_parser(name, help=help_text)
        suite.set_defaults(run=_not_yet)
    _add_kernel_arguments(suites.choices["kernel"])
    _add_savings_arguments(suites.choices["savings"])
    _add_load_arguments(suites.choices["load"])
    _add_replay_arguments(suites.choices["replay"])
    _add_shadow_arguments(suites.choices["shadow"])


def _not_yet(args) -> int:
    raise CLIError(f"`probexit bench {args.suite}` is not available yet")


def _add_kernel_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="writes DIR/kernel.json")
    parser.add_argument("--repeats", type=int, default=20, help="on CPU: timed calls per path and shape (median)")
    parser.add_argument("--rep-ms", type=int, default=100, help="on GPU: do_bench's milliseconds per measurement")
    parser.add_argument("--peak-gbps", type=float, help="peak memory bandwidth in GB/s (default: table by GPU name)")
    parser.add_argument(
        "--dtype",
        choices=("bfloat16", "float16", "float32"),
        default="bfloat16",
        help="dtype of the hidden states and the probe",
    )
    parser.add_argument("--batches", type=int, nargs="+", help="rows per step (default: 1 8 64 256)")
    parser.add_argument("--hidden-sizes", type=int, nargs="+", help="default: 1536 3584 4096 5120 8192")
    parser.add_argument("--widths", type=int, nargs="+", help="probe widths, 0 for linear (default: 0 32 256)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes on CPU)")
    parser.set_defaults(run=_run_kernel)


def _run_kernel(args) -> int:
    import torch

    from probexit.benchmarks import kernel

    if args.repeats < 1 or args.rep_ms < 1 or (args.peak_gbps is not None and args.peak_gbps <= 0):
        raise CLIError("--repeats and --rep-ms must be at least 1, and --peak-gbps positive")
    sizes = [s for s in (args.batches, args.hidden_sizes, args.widths) if s]
    if any(value < 0 for values in sizes for value in values):
        raise CLIError("--batches, --hidden-sizes and --widths take non-negative integers")
    shapes = kernel.default_shapes(
        args.batches or kernel.BATCHES, args.hidden_sizes or kernel.HIDDEN_SIZES, args.widths or kernel.WIDTHS
    )
    report = kernel.run_kernel_benchmark(
        args.out,
        shapes,
        dtype=getattr(torch, args.dtype),
        repeats=args.repeats,
        rep_ms=args.rep_ms,
        peak_gbps=args.peak_gbps,
        compile_reference=not args.no_compile,
    )
    print("\n".join(kernel.summary_lines(report)))
    print(f"wrote {args.out / 'kernel.json'}")
    return 0


def _add_problem_arguments(parser, problems_help: str) -> None:
    """The problems and sampling the savings and shadow benchmarks send (the same, so their runs compare)."""
    parser.add_argument("--problems", type=Path, default=None, help=problems_help)
    parser.add_argument("--server", default=None, help="base URL of a running server (default: start the embedded one)")
    parser.add_argument("--api-key", default=None, help=f"the server's key (default: ${API_KEY_ENV})")
    parser.add_argument("--limit", type=int, default=None, help="use the first N problems")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=EVAL_TEMPERATURE)
    parser.add_argument("--top-p", type=float, default=EVAL_TOP_P)
    parser.add_argument("--max-tokens", type=int, default=1024)


def _problems_and_sampling(args):
    from probexit.training.problem_files import load_problems

    problems_file = args.problems or _default_problems()
    problems = load_problems(problems_file)
    if args.limit is not None:
        if args.limit < 1:
            raise CLIError("--limit must be positive")
        problems = problems[: args.limit]
    if args.concurrency < 1 or args.max_tokens < 1:
        raise CLIError("--concurrency and --max-tokens must be positive")
    sampling = {"seed": args.seed, "temperature": args.temperature, "top_p": args.top_p, "max_tokens": args.max_tokens}
    return problems_file, problems, sampling


@contextmanager
def _server(given: str | None, out: Path, serve_flags: list[str] = ()):
    """The base URL of the server to measure: the one given, else a `probexit serve` started here (the embedded
    default unless `serve_flags` say otherwise) and stopped afterwards; yields (url, start-up facts)."""
    if given is not None:
        yield given.rstrip("/"), {}
        return
    from probexit.benchmarks.servers import free_port, probexit_command, start, stop

    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = probexit_command(port, list(serve_flags))
    print("starting the server (about a minute) ...")
    server, seconds = start(command, port, out / "server.log")
    print(f"server up in {seconds:.0f} s")
    try:
        yield f"http://127.0.0.1:{port}", {"command": command[2:], "startup_s": seconds, "pid": server.pid}
    finally:
        stop(server)


def _api_key(args) -> str | None:
    return args.api_key or os.environ.get(API_KEY_ENV)


def _add_savings_arguments(parser) -> None:
    _add_problem_arguments(parser, 'JSONL of {"question", "answer"} (default: the tiny world\'s test split)')
    parser.add_argument(
        "--out", type=Path, required=True, help="writes DIR/report.json, DIR/pareto.png, DIR/runs.jsonl"
    )
    parser.set_defaults(run=_run_savings)


def _run_savings(args) -> int:
    import asyncio

    from probexit.benchmarks import savings

    problems_file, problems, sampling = _problems_and_sampling(args)
    with _server(args.server, args.out) as (base_url, _):
        report = asyncio.run(
            savings.run_benchmark(
                base_url + "/v1",
                _api_key(args) or "none",
                problems,
                args.out,
                sampling,
                args.concurrency,
                display_path(problems_file),
            )
        )
    best = report["best_at_no_loss"]
    print(
        f"baseline accuracy {report['baseline']['accuracy']:.3f}, {report['baseline']['mean_reasoning_tokens']:.0f} "
        f"reasoning tokens; oracle saves {report['oracle']['tokens_saved_pct']:.1f}%"
    )
    if best:
        print(
            f"probe at no loss ({best['param']}): saves {best['tokens_saved_pct']:.1f}% of reasoning tokens, "
            f"accuracy {best['accuracy_delta_pts']:+.1f} points"
        )
    default = next((r for r in report["policies"] if (r["name"], r["param"]) == ("probe", "default")), None)
    if default:
        print(
            f"the server's default: saves {default['tokens_saved_pct']:.1f}% of reasoning tokens, accuracy "
            f"{default['accuracy_delta_pts']:+.1f} points, {default['harms']} answers turned from right into wrong"
        )
    print(f"wrote {args.out / 'report.json'} and {args.out / 'pareto.png'}")
    return 0


def _default_problems() -> Path:
    from probexit.assets import default_paths

    path = default_paths().test_problems
    if not path.is_file():
        raise CLIError(f"no default problem file at {path}; give --problems")
    return path


def _add_load_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="writes DIR/load.json")
    parser.add_argument(
        "--server",
        default=None,
        help="base URL of a running server (default: start the embedded one, or `probexit serve SERVE_FLAGS`)",
    )
    parser.add_argument("--api-key", default=None, help="the server's key (default: $PROBEXIT_API_KEY)")
    parser.add_argument("--concurrency", type=int, default=64, help="streaming requests in flight at once")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="overhead rounds (each: early exit never firing, then disabled, in alternating order)",
    )
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=EVAL_TEMPERATURE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "serve_flags",
        nargs="*",
        metavar="SERVE_FLAGS",
        help="after `--`: flags for the started `probexit serve` (e.g. --model M --probe P)",
    )
    parser.set_defaults(run=_run_load)


def _run_load(args) -> int:
    import asyncio

    from probexit.benchmarks import load

    if min(args.concurrency, args.rounds, args.max_tokens) < 1:
        raise CLIError("--concurrency, --rounds and --max-tokens must be positive")
    if args.server is not None and args.serve_flags:
        raise CLIError("flags after `--` configure the server this benchmark starts; drop them or --server")
    with _server(args.server, args.out, args.serve_flags) as (base_url, started):
        pid = started.pop("pid", None)
        report = asyncio.run(
            load.run_benchmark(
                base_url,
                _api_key(args),
                concurrency=args.concurrency,
                rounds=args.rounds,
                seed=args.seed,
                sampling={"max_tokens": args.max_tokens, "temperature": args.temperature},
                server_pid=pid,
            )
        )
    report["server"] = {"url": base_url, "started_here": args.server is None, **started}
    path = load.write_report(report, args.out)
    print("\n".join(load.summary_lines(report)))
    print(f"wrote {path}")
    return 0


def _add_replay_arguments(parser) -> None:
    parser.add_argument(
        "--traces",
        type=Path,
        required=True,
        metavar="FILE",
        help='JSONL: {"completion", "answer", "id"?} or chat responses (reasoning_content or '
        'reasoning beside content) with the gold "answer"',
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="writes DIR/report.json, DIR/replay.png")
    parser.add_argument(
        "--tokenizer",
        default=None,
        metavar="NAME_OR_PATH",
        help="measure in this tokenizer's tokens (default: characters)",
    )
    parser.add_argument(
        "--extractors",
        default="reasoning",
        help="answer extractors, in order (comma-separated): reasoning for real reasoning models' "
        "prose (default), the tiny world's tinyworld,boxed,answer_is",
    )
    parser.set_defaults(run=_run_replay)


def _run_replay(args) -> int:
    from probexit.benchmarks import replay
    from probexit.probes.answers import get_extractor

    extractors = tuple(name.strip() for name in args.extractors.split(",") if name.strip())
    get_extractor(extractors)  # unknown names fail here, before any work
    if not args.traces.is_file():
        raise CLIError(f"no traces file at {args.traces}")
    report = replay.run_replay(args.traces, args.out, extractors, args.tokenizer)
    print("\n".join(replay.summary_lines(report)))
    print(f"wrote {args.out / 'report.json'} and {args.out / 'replay.png'}")
    return 0


def _add_shadow_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="writes DIR/shadow.json")
    parser.add_argument(
        "--url",
        default=None,
        help="a server running with --shadow-rate: only read its metrics "
        "(the estimates cover every shadow request since it started)",
    )
    _add_problem_arguments(
        parser,
        'without --url: send these problems in shadow mode first (JSONL of {"question", '
        '"answer"}; default: the tiny world\'s test split), with the sampling below',
    )
    parser.add_argument(
        "--savings",
        type=Path,
        default=None,
        metavar="DIR",
        help="a `probexit bench savings` --out folder of the same problems and sampling: put what it "
        "measured with early exit on beside the estimates",
    )
    parser.set_defaults(run=_run_shadow)


def _run_shadow(args) -> int:
    import asyncio

    from probexit.benchmarks import shadow

    if args.url is not None:
        if args.problems is not None or args.savings is not None or args.server is not None:
            raise CLIError("--url only reads a server's metrics; --problems, --savings and --server send problems")
        report = {"server": args.url, "estimates": shadow.estimates(shadow.read_counters(args.url, _api_key(args)))}
    else:
        problems_file, problems, sampling = _problems_and_sampling(args)
        with _server(args.server, args.out) as (base_url, _):
            before = shadow.read_counters(base_url)
            asyncio.run(shadow.send_shadow(base_url, _api_key(args) or "none", problems, sampling, args.concurrency))
            counters = shadow.difference(shadow.read_counters(base_url), before)
            served = asyncio.run(shadow.served(base_url, _api_key(args) or "none"))
        report = {
            "problems": display_path(problems_file),
            "n_problems": len(problems),
            "sampling": sampling,
            "estimates": shadow.estimates(counters),
        }
        if args.savings is not None:
            measured = shadow.measured_with_early_exit(args.savings, sampling, problems, served)
            report["compared_with_early_exit_on"] = shadow.side_by_side(report["estimates"], measured)
    if not report["estimates"]["shadow_requests"]:
        raise CLIError(
            "no shadow requests in the server's metrics: start it with --shadow-rate R, or send "
            'requests with early_exit {"shadow": true}'
        )
    path = shadow.write_report(report, args.out)
    print("\n".join(shadow.summary_lines(report)))
    print(f"wrote {path}")
    return 0
