"""`probexit bench SUITE`: the benchmarks; each writes its numbers to JSON.

Each suite is one row of `SUITES`: its name, its help, the settings dataclasses its flags are made from (one
flag group each, `cli/flags.py`) and the handler that receives those settings, built and checked. A new
benchmark adds its settings class (`benchmarks/settings.py`) and a row.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from probexit.benchmarks import display_path
from probexit.cli.errors import CLIError
from probexit.cli.flags import add_config_flags, config_values
from probexit.server.config import API_KEY_ENV

NAME = "bench"


@dataclass(frozen=True)
class ServerTarget:
    """The server a benchmark measures over HTTP."""

    server: str | None = field(
        default=None,
        metadata={
            "help": "Base URL of a running server. Default: start `probexit serve` here (the embedded default, "
            "or the flags after `--` where the suite takes them) and stop it afterwards."
        },
    )
    api_key: str | None = field(
        default=None, repr=False, metadata={"help": f"The server's key. Default: ${API_KEY_ENV}."}
    )

    @property
    def key(self) -> str | None:
        return self.api_key or os.environ.get(API_KEY_ENV)


@dataclass(frozen=True)
class Suite:
    name: str
    help: str
    settings: Callable[[], tuple[type, ...]]  # the settings classes, imported when the suite's parser is built
    run: Callable[..., int]  # run(*settings), in the order of `settings`
    after_dashes: str | None = None  # the field of the first settings class that takes the flags after `--`


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(NAME, help=HELP)
    suites = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for suite in SUITES:
        command = suites.add_parser(suite.name, help=suite.help, description=suite.help[0].upper() + suite.help[1:])
        classes = suite.settings()
        for cls in classes:
            add_config_flags(command.add_argument_group(cls.__name__), cls)
        if suite.after_dashes:
            command.add_argument("after_dashes", nargs="*", metavar="-- FLAGS", help="flags handed on (after `--`)")
        command.set_defaults(run=partial(_run_suite, suite, classes))


def _run_suite(suite: Suite, classes: tuple[type, ...], args) -> int:
    settings = [cls(**config_values(args, cls)) for cls in classes]
    if suite.after_dashes:
        settings[0] = replace(settings[0], **{suite.after_dashes: tuple(args.after_dashes)})
    return suite.run(*settings)


# -- servers and problems ----------------------------------------------------------------------------------------
@contextmanager
def _server(target: ServerTarget, out: Path, serve_flags: tuple[str, ...] = ()):
    """The base URL of the server to measure: the one given, else a `probexit serve` started here (the embedded
    default unless `serve_flags` say otherwise) and stopped afterwards; yields (url, start-up facts)."""
    if target.server is not None:
        if serve_flags:
            raise CLIError("flags after `--` configure the server this benchmark starts; drop them or --server")
        yield target.server.rstrip("/"), {}
        return
    from probexit.benchmarks.servers import free_port, probexit_command, sigterm_exits, start, stop

    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = probexit_command(port, list(serve_flags))
    with sigterm_exits():
        print("starting the server (about a minute) ...")
        server, seconds = start(command, port, out / "server.log")
        print(f"server up in {seconds:.0f} s")
        try:
            yield f"http://127.0.0.1:{port}", {"command": command[2:], "startup_s": seconds, "pid": server.pid}
        finally:
            stop(server)


def _on_server(target: ServerTarget, out: Path, client, serve_flags: tuple[str, ...] = ()):
    """What `client(api_base, key)`, a coroutine function, returns when run against the server to measure."""
    import asyncio

    with _server(target, out, serve_flags) as (base_url, _):
        return asyncio.run(client(base_url + "/v1", target.key or "none"))


def _problems(requests) -> tuple[Path, list]:
    """The problem file a `RequestSampling` names (default: the tiny world's test split) and its first problems."""
    from probexit.training.problem_files import load_problems

    path = requests.problems or _embedded().test_problems
    if requests.problems is None and not path.is_file():
        raise CLIError(f"no default problem file at {path}; give --problems")
    problems = load_problems(path)
    return path, problems[: requests.limit] if requests.limit else problems


def _embedded():
    from probexit.assets import MissingAssetsError, require_default_paths

    try:
        return require_default_paths()
    except MissingAssetsError as error:
        raise CLIError(str(error)) from None


def _report(lines: list[str], *paths: Path) -> int:
    print("\n".join(lines))
    print(f"wrote {' and '.join(str(path) for path in paths)}")
    return 0


# -- the suites --------------------------------------------------------------------------------------------------
def _run_savings(settings, requests, target: ServerTarget) -> int:
    from probexit.benchmarks import savings

    problems_file, problems = _problems(requests)
    if settings.compare_probe is not None and target.server is not None:
        raise CLIError("--compare-probe starts a server for that probe here; it needs no --server")
    sent = (problems, settings.out, requests.sampling, requests.concurrency)
    report = _on_server(
        target, settings.out, lambda url, key: savings.run_benchmark(url, key, *sent, display_path(problems_file))
    )
    if settings.compare_probe is not None:
        flags = ("--probe", str(settings.compare_probe))
        report = _on_server(
            target,
            settings.out / "compared_probe",
            lambda url, key: savings.add_compared_probe(url, key, *sent, report),
            flags,
        )
    return _report(_savings_lines(report), settings.out / "report.json", settings.out / "pareto.png")


def _savings_lines(report: dict) -> list[str]:
    baseline, best = report["baseline"], report["best_at_no_loss"]
    lines = [
        f"baseline accuracy {baseline['accuracy']:.3f}, {baseline['mean_reasoning_tokens']:.0f} reasoning tokens; "
        f"oracle saves {report['oracle']['tokens_saved_pct']:.1f}%"
    ]
    if best:
        lines.append(
            f"probe at no loss ({best['param']}): saves {best['tokens_saved_pct']:.1f}% of reasoning tokens, "
            f"accuracy {best['accuracy_delta_pts']:+.1f} points"
        )
    compared_run = report.get("compared_probe") or {}
    compared = compared_run.get("best_at_no_loss")
    if compared:
        lines.append(
            f"compared probe at no loss ({compared['param']}): saves {compared['tokens_saved_pct']:.1f}%, accuracy "
            f"{compared['accuracy_delta_pts']:+.1f} points"
        )
    if compared_run.get("oracle_tokens_saved_pct") is not None:
        lines.append(
            f"the oracle within the compared probe's reach saves {compared_run['oracle_tokens_saved_pct']:.1f}%"
        )
    default = next((r for r in report["policies"] if (r["name"], r["param"]) == ("probe", "default")), None)
    if default:
        lines.append(
            f"the server's default: saves {default['tokens_saved_pct']:.1f}% of reasoning tokens, accuracy "
            f"{default['accuracy_delta_pts']:+.1f} points, {default['harms']} answers turned from right into wrong"
        )
    return lines


def _run_shadow(settings, requests, target: ServerTarget) -> int:
    import asyncio

    from probexit.benchmarks import shadow

    if settings.url is not None:
        if requests.problems is not None or settings.savings is not None or target.server is not None:
            raise CLIError("--url only reads a server's metrics; --problems, --savings and --server send problems")
        report = {"server": settings.url, "estimates": shadow.estimates(shadow.read_counters(settings.url, target.key))}
    else:
        problems_file, problems = _problems(requests)
        key = target.key or "none"
        with _server(target, settings.out) as (base_url, _):
            before = shadow.read_counters(base_url)
            asyncio.run(shadow.send_shadow(base_url, key, problems, requests.sampling, requests.concurrency))
            counters = shadow.difference(shadow.read_counters(base_url), before)
            served = asyncio.run(shadow.served(base_url, key))
        report = {
            "problems": display_path(problems_file),
            "n_problems": len(problems),
            "sampling": requests.sampling,
            "estimates": shadow.estimates(counters),
        }
        if settings.savings is not None:
            measured = shadow.measured_with_early_exit(settings.savings, requests.sampling, problems, served)
            report["compared_with_early_exit_on"] = shadow.side_by_side(report["estimates"], measured)
    if not report["estimates"]["shadow_requests"]:
        raise CLIError(
            "no shadow requests in the server's metrics: start it with --shadow-rate R, or send "
            'requests with early_exit {"shadow": true}'
        )
    return _report(shadow.summary_lines(report), shadow.write_report(report, settings.out))


def _run_replay(settings) -> int:
    from probexit.benchmarks import replay

    report = replay.run_replay(
        settings.traces, settings.out, settings.extractors, settings.tokenizer, settings.boundaries
    )
    return _report(replay.summary_lines(report), settings.out / "report.json", settings.out / "replay.png")


def _run_kernel(settings) -> int:
    import torch

    from probexit.benchmarks import kernel

    report = kernel.run_kernel_benchmark(
        settings.out,
        kernel.shapes_of(settings),
        dtype=getattr(torch, settings.dtype),
        repeats=settings.repeats,
        rep_ms=settings.rep_ms,
        peak_gbps=settings.peak_gbps,
        compile_reference=settings.compile,
    )
    return _report(kernel.summary_lines(report), settings.out / "kernel.json")


def _run_load(settings, target: ServerTarget) -> int:
    import asyncio

    from probexit.benchmarks import load

    with _server(target, settings.out, settings.serve_flags) as (base_url, started):
        pid = started.pop("pid", None)
        report = asyncio.run(load.run_benchmark(base_url, target.key, settings, server_pid=pid))
    report["server"] = {"url": base_url, "started_here": target.server is None, **started}
    return _report(load.summary_lines(report), load.write_report(report, settings.out))


def _run_soak(settings) -> int:
    import asyncio

    from probexit.benchmarks import soak
    from probexit.benchmarks.server_overhead import questions

    test_problems = _embedded_test_problems()
    prompts = [problem.question for problem in test_problems] or questions(256, seed=settings.seed)
    target = ServerTarget()
    with _server(target, settings.out, settings.serve_flags) as (base_url, started):
        pid = started.pop("pid")
        report = asyncio.run(soak.run_soak(base_url, target.key, prompts, settings, pid))
    report["server"] = started  # stopped by now: its log is whole
    report["server_log_errors"] = soak.count_log_errors(settings.out / "server.log")
    return _report(soak.summary_lines(report), soak.write_report(report, settings.out))


def _embedded_test_problems() -> list:
    """The tiny world's test problems, or none where the embedded default is not installed."""
    from probexit.assets import default_paths
    from probexit.training.problem_files import load_problems

    path = default_paths().test_problems
    return load_problems(path) if path.is_file() else []


def _run_engine_overhead(settings) -> int:
    from probexit.assets import EMBEDDED_OFFLINE_ENGINE
    from probexit.benchmarks import engine_overhead
    from probexit.training.problem_files import load_problems

    embedded = _embedded() if settings.model is None or settings.probe is None else None
    if embedded is not None:
        questions = [p.question for p in load_problems(embedded.test_problems)][: settings.prompts]
    else:
        questions = [f"What is {i % 20} + {(7 * i) % 20} - {(3 * i) % 20}?" for i in range(settings.prompts)]
    report = engine_overhead.run_engine_overhead(
        settings.model or embedded.policy,
        settings.probe or embedded.probe,
        questions,
        settings.out,
        rounds=settings.rounds,
        max_tokens=settings.max_tokens,
        seed=settings.seed,
        engine_kwargs=dict(EMBEDDED_OFFLINE_ENGINE),
    )
    return _report(engine_overhead.summary_lines(report), settings.out / "engine_overhead.json")


def _run_server_overhead(settings) -> int:
    from probexit.benchmarks import server_overhead

    report = server_overhead.run_server_overhead(settings)
    return _report(server_overhead.summary_lines(report), settings.out)


def _run_advrm_edits(settings) -> int:
    from probexit.training import advrm_edits

    report = advrm_edits.run_edits(settings)
    return _report(advrm_edits.summary_lines(report), settings.out)


def _run_structured(settings, requests, target: ServerTarget) -> int:
    from probexit.benchmarks import structured_outputs

    problems_file, problems = _problems(requests)
    problems = problems if requests.limit else problems[: structured_outputs.DEFAULT_PROBLEMS]
    sent = (problems, requests.sampling, requests.concurrency, display_path(problems_file))
    report = _on_server(target, settings.out, lambda url, key: structured_outputs.run_benchmark(url, key, *sent))
    path = structured_outputs.write_report(report, settings.out)
    return _report(structured_outputs.summary_lines(report), path)


def _structured_settings() -> tuple[type, ...]:
    from probexit.benchmarks.settings import RequestSampling
    from probexit.benchmarks.structured_outputs import StructuredSettings

    return (StructuredSettings, RequestSampling, ServerTarget)


def _settings(*names: str) -> Callable[[], tuple[type, ...]]:
    """The settings classes of `benchmarks/settings.py` (or `ServerTarget`) called `names`, imported on demand."""

    def classes() -> tuple[type, ...]:
        from probexit.benchmarks import settings

        return tuple(ServerTarget if name == "ServerTarget" else getattr(settings, name) for name in names)

    return classes


def _edits_settings() -> tuple[type, ...]:
    from probexit.training.advrm_edits import EditsSettings

    return (EditsSettings,)


SUITES = (
    Suite(
        "savings",
        "accuracy against thinking tokens, probe against peer policies",
        _settings("SavingsSettings", "RequestSampling", "ServerTarget"),
        _run_savings,
    ),
    Suite(
        "shadow",
        "what early exit would save and change, from a server's shadow-mode metrics",
        _settings("ShadowSettings", "RequestSampling", "ServerTarget"),
        _run_shadow,
    ),
    Suite(
        "replay",
        "what early exit could save on recorded traces (no engine, no probe)",
        _settings("ReplaySettings"),
        _run_replay,
    ),
    Suite("kernel", "the fused probe kernel against torch", _settings("KernelSettings"), _run_kernel),
    Suite(
        "load",
        "concurrent streaming load on the server",
        _settings("LoadSettings", "ServerTarget"),
        _run_load,
        after_dashes="serve_flags",
    ),
    Suite(
        "soak",
        "a server under long streaming load: errors, leftovers, memory over time, counters against the clients",
        _settings("SoakSettings"),
        _run_soak,
        after_dashes="serve_flags",
    ),
    Suite(
        "engine-overhead",
        "what early exit costs inside one offline engine",
        _settings("EngineOverheadSettings"),
        _run_engine_overhead,
    ),
    Suite(
        "server-overhead",
        "`probexit serve` against vLLM's own server on the same model",
        _settings("ServerOverheadSettings"),
        _run_server_overhead,
        after_dashes="engine_flags",
    ),
    Suite("advrm-edits", "a reward model's scores of hand-edited failures", _edits_settings, _run_advrm_edits),
    Suite(
        "structured",
        "structured outputs with early exit: valid answers, and the thinking saved with and without a schema "
        "(the first 100 problems unless --limit)",
        _structured_settings,
        _run_structured,
    ),
)
HELP = f"benchmarks: {', '.join(suite.name for suite in SUITES)}"
