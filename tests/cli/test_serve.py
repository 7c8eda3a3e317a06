"""`probexit serve` flags and start-up errors; none of these starts an engine."""

import json
import socket
import subprocess
import sys

import pytest

from probexit import assets
from probexit.benchmarks.servers import free_port
from probexit.cli.errors import CLIError
from probexit.cli.main import main
from probexit.cli.serve import build_serve_parser, config_from_args
from probexit.server.config import ConfigError, ServerConfig
from tests.server.harness import find_test_model, make_probe


@pytest.fixture(scope="module")
def parser():
    return build_serve_parser()


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    """A stand-in for the embedded default's folders."""
    paths = assets.EmbeddedPaths(tmp_path / "policy", tmp_path / "probe", tmp_path / "reward")
    monkeypatch.setattr(assets, "default_paths", lambda: paths)
    return paths


def test_vllm_engine_flags_pass_through(parser, tmp_path):
    options = parser.parse_args(
        [
            "--model",
            str(tmp_path),
            "--tensor-parallel-size",
            "2",
            "--port",
            "9001",
            "--enforce-eager",
            "--max-model-len",
            "512",
            "--threshold",
            "0.7",
        ]
    )
    config = config_from_args(options)
    assert (config.port, config.threshold, config.host) == (9001, 0.7, "127.0.0.1")
    args = config.engine_args
    assert (args.tensor_parallel_size, args.enforce_eager, args.max_model_len) == (2, True, 512)


def test_missing_embedded_default_is_one_clear_error(parser, embedded):
    with pytest.raises(CLIError, match="embedded tiny-world default is not installed .* --model"):
        config_from_args(parser.parse_args([]))


def test_embedded_default_fills_in_model_probe_and_engine_defaults(parser, embedded, monkeypatch):
    for folder in (embedded.policy, embedded.probe, embedded.reward):
        folder.mkdir()
    (embedded.policy / "config.json").write_text("{}")
    monkeypatch.setenv("PROBEXIT_API_KEY", "from-env")
    config = config_from_args(parser.parse_args([]))
    assert (config.model, config.probe, config.reward_model) == (str(embedded.policy), embedded.probe, embedded.reward)
    assert config.served_model_name == "tinyworld" and config.api_key == "from-env"
    assert (config.engine_args.dtype, config.engine_args.max_model_len) == ("float32", 1024)
    assert "from-env" not in repr(config)  # the key is never printed
    explicit = config_from_args(parser.parse_args(["--dtype", "bfloat16"]))
    assert explicit.engine_args.dtype == "bfloat16"


@pytest.mark.parametrize(
    "fields, flag",
    [
        pytest.param({"port": 70000}, "--port", id="port"),
        pytest.param({"threshold": 1.5}, "--threshold", id="threshold"),
        pytest.param({"early_exit": True}, "--early-exit needs --probe", id="early-exit-without-probe"),
        pytest.param({"probe": "/nonexistent/probe"}, "--probe", id="probe-folder"),
        pytest.param({"api_key": " "}, "--api-key", id="empty-key"),
        pytest.param({"min_thinking_tokens": -2}, "--min-thinking-tokens", id="min-thinking"),
    ],
)
def test_config_errors_name_the_flag(fields, flag):
    with pytest.raises(ConfigError, match=flag):
        ServerConfig(model="m", **fields)


def test_early_exit_defaults_to_on_with_a_probe(tmp_path):
    assert ServerConfig(model="m").early_exit_default is False
    assert ServerConfig(model="m", probe=tmp_path).early_exit_default is True
    assert ServerConfig(model="m", probe=tmp_path, early_exit=False).early_exit_default is False


def test_bad_probe_fails_in_one_line_before_the_port_opens(tmp_path, capsys):
    (tmp_path / "probe").mkdir()
    assert main(["serve", "--model", str(tmp_path), "--probe", str(tmp_path / "probe")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("probexit: error: --probe") and "probe.json" in error


def test_mismatched_probe_is_refused(tmp_path, capsys):
    model = find_test_model()
    if model is None:
        pytest.skip("no test model")
    probe = make_probe(model, tmp_path / "probe", bias=1.0)
    probe_json = json.loads((probe / "probe.json").read_text())
    probe_json["model"]["fingerprint"] = "0" * 32  # as if trained on another fine-tune
    (probe / "probe.json").write_text(json.dumps(probe_json))
    assert main(["serve", "--model", str(model), "--probe", str(probe)]) == 2
    assert "train a probe for this model" in capsys.readouterr().err


def test_busy_port_fails_fast(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(tmp_path), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_the_port_is_held_before_the_engine_starts(tmp_path, monkeypatch, capsys):
    """The server binds its port before it builds anything, so that none of the ports the engine's processes pick
    for themselves can be it; the port is free again once the server is gone."""
    import probexit.server.app as app_module

    port = free_port()
    held = []

    def build_app(config):
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", port))
                held.append(False)
            except OSError:
                held.append(True)
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(app_module, "build_app", build_app)
    assert main(["serve", "--model", str(tmp_path), "--port", str(port)]) == 2
    assert held == [True] and "stopped by the test" in capsys.readouterr().err
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_serve_help_lists_probexit_flags():
    done = subprocess.run(
        [sys.executable, "-m", "probexit.cli", "serve", "--help=probexit"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0
    for flag in ("--probe", "--reward-model", "--api-key", "--threshold", "--early-exit"):
        assert flag in done.stdout
    assert "(default: None)" not in done.stdout
