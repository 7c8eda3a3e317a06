"""`probexit bench`: every suite's flags come from its settings classes, and bad values are one-line errors."""

from dataclasses import fields

import pytest

from probexit.cli.bench import SUITES
from probexit.cli.main import main

SUITE_NAMES = [suite.name for suite in SUITES]


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_NAMES)
def test_every_suite_has_help_listing_each_documented_field(suite, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", suite.name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for cls in suite.settings():
        for item in fields(cls):
            if "help" in item.metadata:
                assert f"--{item.name.replace('_', '-')}" in out, (cls.__name__, item.name)


def test_the_bench_help_names_every_suite(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in SUITE_NAMES)


@pytest.mark.parametrize(
    "argv, message",
    [
        pytest.param(["load", "--rounds", "0"], "--rounds must be positive", id="load-rounds"),
        pytest.param(["savings", "--limit", "0"], "--limit must be positive", id="savings-limit"),
        pytest.param(["engine-overhead", "--prompts", "0"], "--prompts must be positive", id="engine-prompts"),
        pytest.param(["replay", "--traces", "none.jsonl"], "no traces file", id="replay-no-traces"),
        pytest.param(["replay", "--traces", "x", "--extractors", "prose"], "unknown answer extractor", id="extractor"),
        pytest.param(["kernel", "--repeats", "0"], "--repeats", id="kernel-repeats"),
        pytest.param(["advrm-edits", "--limit", "0"], "--limit must be at least 1", id="edits-limit"),
        pytest.param(
            ["load", "--server", "http://127.0.0.1:9", "--", "--model", "m"], "flags after `--`", id="server-and-flags"
        ),
    ],
)
def test_bad_settings_are_one_line_errors(argv, message, tmp_path, capsys):
    assert main(["bench", argv[0], "--out", str(tmp_path / "out"), *argv[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("probexit: error:") and message in err[0]


def test_a_missing_required_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "replay", "--out", "x"])
    assert exit_info.value.code == 2 and "--traces" in capsys.readouterr().err


def test_space_separated_lists_become_tuples():
    from probexit.benchmarks.settings import KernelSettings
    from probexit.cli.flags import config_values
    from probexit.cli.main import build_parser

    args = build_parser(["bench"]).parse_args(["bench", "kernel", "--out", "o", "--widths", "0", "16", "--no-compile"])
    settings = KernelSettings(**config_values(args, KernelSettings))
    assert settings.widths == (0, 16) and settings.batches == (1, 8, 64, 256) and settings.compile is False


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["starting the server", "server up"], ids=["while-starting", "while-measuring"])
def test_a_benchmark_stopped_with_sigterm_stops_the_server_it_started(stage, tmp_path):
    """A supervisor's SIGTERM (not only Ctrl-C) must reach the `probexit serve` a benchmark started: before the
    fix, the benchmark died at once and left the server and its engine running, orphaned."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from tests.server.harness import find_test_model

    if find_test_model() is None:
        pytest.skip("no test model (the embedded default is not installed)")
    bench = subprocess.Popen(
        [sys.executable, "-m", "probexit.cli", "bench", "savings", "--limit", "1", "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        while stage not in (line := bench.stdout.readline()):
            assert line, "the benchmark ended before reaching its server"
        deadline = time.monotonic() + 30
        while not (started := psutil.Process(bench.pid).children(recursive=True)):
            assert time.monotonic() < deadline, "the benchmark started no server"
            time.sleep(0.1)
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=120) != 0
        _, alive = psutil.wait_procs(started, timeout=60)
        assert not alive, [process.cmdline() for process in alive]
    finally:
        for process in psutil.Process(bench.pid).children(recursive=True) if bench.poll() is None else []:
            process.kill()
        bench.kill()
