"""Faults: clients that leave, files that cannot be served, an engine that dies, and SIGTERM.

The engine-death test kills the session server's engine core, so it carries the `kills_server` marker
and runs after every other test (see conftest.py). The SIGTERM test starts a server of its own.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time

import httpx
import psutil
import pytest

from probexit.benchmarks.servers import probexit_command
from probexit.cli.main import main
from tests.server.harness import ServerFailed, free_port, launch, make_probe, server_env, stop, wait_until_healthy

MESSAGES = [{"role": "user", "content": "What is 3 + 14 - 7?"}]
PROMPT = "<|im_start|>user\nWhat is 3 + 14 - 7?<|im_end|>\n<|im_start|>assistant\n<think>\n"
LONG = {"max_tokens": 900, "ignore_eos": True, "early_exit": {"enabled": False}}  # runs until stopped


def auth(server) -> dict:
    return {"Authorization": f"Bearer {server.api_key}"}


def running(server) -> int:
    return server.get("/health").json()["requests_running"]


def seconds_until_idle(server, timeout: float = 5.0) -> float:
    began = time.monotonic()
    while running(server) and time.monotonic() - began < timeout:
        time.sleep(0.02)
    return time.monotonic() - began


def port_open(port: int) -> bool:
    with socket.socket() as probe_socket:
        probe_socket.settimeout(0.5)
        return probe_socket.connect_ex(("127.0.0.1", port)) == 0


# -- a client that disconnects ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, body, engine_requests",
    [
        pytest.param("/v1/chat/completions", {"messages": MESSAGES}, 1, id="chat"),
        pytest.param("/v1/completions", {"prompt": PROMPT, "n": 2}, 2, id="completion-n2"),
    ],
)
def test_disconnect_mid_stream_aborts_the_engine_requests_within_a_second(server, path, body, engine_requests):
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "POST", server.base_url + path, json={**body, **LONG, "stream": True}, headers=auth(server)
        ) as response,
    ):
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert running(server) == engine_requests
    assert seconds_until_idle(server) < 1.0, "the engine kept generating for a client that left"


# -- files that cannot be served ------------------------------------------------------------------------------
def damaged_probe(model_dir, folder, damage: str):
    """A probe folder broken in one way."""
    from probexit.probes.fingerprint import ModelIdentity, model_identity

    if damage == "missing":
        return folder / "nowhere"
    probe = make_probe(model_dir, folder / "probe", bias=1.0)
    config_file, weights_file = probe / "probe.json", probe / "probe.safetensors"
    config = json.loads(config_file.read_text())
    if damage == "empty":
        config_file.unlink()
        weights_file.unlink()
    elif damage == "json":
        config_file.write_text(config_file.read_text()[:40])
    elif damage == "format":
        config_file.write_text(json.dumps({**config, "version": 99}))
    elif damage == "weights":
        weights_file.write_bytes(weights_file.read_bytes()[:60])
    elif damage == "fingerprint":
        config["model"]["fingerprint"] = "0" * 32  # as if trained on another fine-tune of the same architecture
        config_file.write_text(json.dumps(config))
    elif damage == "hidden-size":
        import torch

        from probexit.probes.probe import Probe, ProbeConfig, ProbeModel

        identity = model_identity(model_dir)
        other = ModelIdentity(identity.name, 64, identity.vocab_size, identity.fingerprint)
        module = ProbeModel(64, 0, torch.zeros(64), torch.ones(64))
        Probe(ProbeConfig("linear", 64, 0, other), module.weights()).save(probe)
    return probe


@pytest.mark.parametrize(
    "damage, words",
    [
        pytest.param("missing", "no such folder", id="missing-folder"),
        pytest.param("empty", "expected probe.json and probe.safetensors", id="missing-files"),
        pytest.param("json", "not valid JSON", id="corrupt-config"),
        pytest.param("format", "version=99", id="unknown-format"),
        pytest.param("weights", "corrupt", id="corrupt-weights"),
        pytest.param("fingerprint", "train a probe for this model", id="other-model"),
        pytest.param("hidden-size", "hidden_size", id="other-hidden-size"),
    ],
)
def test_a_probe_that_cannot_be_served_stops_start_up_in_one_line(test_model_dir, tmp_path, capsys, damage, words):
    probe = damaged_probe(test_model_dir, tmp_path, damage)
    assert main(["serve", "--model", str(test_model_dir), "--probe", str(probe), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"probexit: error: --probe {probe}") and words in err


def test_a_missing_reward_model_stops_start_up_in_one_line(test_model_dir, tmp_path, capsys):
    """Corrupt and mismatched reward folders: tests/server/test_rewards.py."""
    missing = tmp_path / "nowhere"
    assert main(["serve", "--model", str(test_model_dir), "--reward-model", str(missing), "--port", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("probexit: error: --reward-model")


def serve_until_exit(args: list[str], tmp_path, timeout: float = 300) -> tuple[int, str, bool]:
    """Runs `probexit serve ARGS --port P` to its end: exit status, stderr, and whether the port ever opened."""
    port = free_port()
    command = probexit_command(port, args)
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=server_env(tmp_path)
    )
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)
    reader.start()
    opened, began = False, time.monotonic()
    while process.poll() is None and time.monotonic() - began < timeout:
        opened = opened or port_open(port)
        time.sleep(0.2)
    if process.poll() is None:
        process.kill()
    process.wait()
    reader.join(timeout=10)
    return process.returncode, "".join(stderr), opened


@pytest.mark.slow
def test_start_up_failure_exits_non_zero_before_the_port_opens(test_model_dir, tmp_path):
    probe = damaged_probe(test_model_dir, tmp_path, "weights")
    status, stderr, opened = serve_until_exit(["--model", str(test_model_dir), "--probe", str(probe)], tmp_path)
    assert status == 2 and not opened
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"probexit: error: --probe {probe}: probe weights")


# -- the engine dies under the server -----------------------------------------------------------------------------
def engine_cores(api: psutil.Process) -> list[psutil.Process]:
    """The server's engine core processes (vLLM titles them VLLM::EngineCore)."""
    return [child for child in api.children() if "EngineCore" in " ".join(child.cmdline())]


@pytest.mark.kills_server
@pytest.mark.slow
def test_engine_death_gives_503_and_fast_errors(server):
    api = psutil.Process(server.process.pid)
    cores = engine_cores(api)
    assert cores, f"no engine core among {[child.cmdline() for child in api.children()]}"
    # the engine core's workers must follow it; the API's own helpers (multiprocessing's resource tracker)
    # rightly live as long as the API does
    workers = [worker for core in cores for worker in core.children(recursive=True)]
    events: list[str] = []
    with httpx.Client(timeout=30) as http:
        with http.stream(
            "POST",
            server.base_url + "/v1/chat/completions",
            headers=auth(server),
            json={"messages": MESSAGES, **LONG, "stream": True},
        ) as response:
            lines = response.iter_lines()
            for _ in range(4):
                next(lines)
            for core in cores:
                core.kill()
            killed = time.monotonic()
            events = [line for line in lines if line.startswith("data: ")]  # the stream must end, not hang
        assert time.monotonic() - killed < 10
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2][len("data: ") :])["error"]
    assert error["code"] == "engine_unavailable" and error["type"] == "server_error"

    health = server.get("/health")
    assert health.status_code == 503 and health.json()["error"]["code"] == "engine_unavailable"
    for path, body in (
        ("/v1/chat/completions", {"messages": MESSAGES}),
        ("/v1/completions", {"prompt": PROMPT}),
        ("/v1/chat/completions", {"messages": MESSAGES, "stream": True}),
    ):  # a 503, not a 200 stream
        began = time.monotonic()
        answer = server.post(path, body, timeout=10)
        assert answer.status_code == 503 and time.monotonic() - began < 5
        assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert server.process.poll() is None  # the server itself stays up to say what happened
    _, alive = psutil.wait_procs(workers, timeout=30)
    for process in alive:  # don't leak them if they did not
        process.kill()
    assert not alive, f"engine workers outlived their engine core: {[p.pid for p in alive]}"


# -- SIGTERM ----------------------------------------------------------------------------------------------------
def stream_outcome(server, outcomes: list, started: threading.Event) -> None:
    """Streams one long request; appends 'finished', 'shutting down' (the error event that says so, then
    `[DONE]`), 'cut short' (ended without `[DONE]`: a silent truncation) or the exception the client raised."""
    body = {"messages": MESSAGES, **LONG, "stream": True}
    try:
        with (
            httpx.Client(timeout=60) as http,
            http.stream("POST", server.base_url + "/v1/chat/completions", json=body, headers=auth(server)) as response,
        ):
            lines = (line for line in response.iter_lines() if line)  # events are separated by blank lines
            seen = [next(lines) for _ in range(3)]
            started.set()
            seen += list(lines)
        outcome = "shutting down" if any('"server_shutting_down"' in line for line in seen) else "finished"
        outcomes.append(outcome if seen[-1] == "data: [DONE]" else "cut short")
    except httpx.HTTPError as error:
        outcomes.append(type(error).__name__)


@pytest.mark.slow
def test_sigterm_ends_requests_closes_the_port_and_leaves_no_process(test_model_dir, tmp_path):
    """A grace time far shorter than the requests: each must end with the shutting-down error event."""
    started_at = time.monotonic()
    instance = launch(
        test_model_dir, tmp_path, make_probe(test_model_dir, tmp_path / "probe", bias=20.0), "--shutdown-grace", "0.5"
    )
    try:
        wait_until_healthy(instance, started_at)
    except ServerFailed as error:
        stop(instance)
        pytest.fail(str(error))
    tree = psutil.Process(instance.process.pid).children(recursive=True)
    assert engine_cores(psutil.Process(instance.process.pid))
    outcomes: list = []
    streams = [threading.Event() for _ in range(3)]
    threads = [threading.Thread(target=stream_outcome, args=(instance, outcomes, event)) for event in streams]
    for thread in threads:
        thread.start()
    for event in streams:
        assert event.wait(120), "a request never started streaming"
    instance.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a request hung after SIGTERM"
    assert outcomes == ["shutting down"] * 3, outcomes
    try:
        instance.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stop(instance)
        pytest.fail("the server did not exit within 60 s of SIGTERM")
    assert not port_open(int(instance.base_url.rsplit(":", 1)[1]))
    _, alive = psutil.wait_procs(tree, timeout=30)
    for process in alive:
        process.kill()
    assert not alive, f"processes outlived the server: {[(p.pid, p.name()) for p in alive]}"
