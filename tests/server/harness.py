"""Helpers for the server tests: the test model, a probe that always fires, a running server process.

The model comes from $PROBEXIT_TEST_MODEL, else the embedded default (`assets/tinyworld/policy`); the
tests that need the server skip, saying so, when neither exists. The probe is built here: a linear probe
with zero weights and a large bias scores every boundary about 1.0, so the server's default threshold
(0.5) exits at the first boundary and a request's threshold of 1.01 never exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from probexit.assets import EMBEDDED_ENGINE_DEFAULTS
from probexit.benchmarks.servers import free_port, probexit_command
from probexit.benchmarks.servers import stop as stop_process

API_KEY = "test-key-not-secret"
MODEL_NAME = "tinyworld-test"
START_TIMEOUT_S = 300


def find_test_model() -> Path | None:
    from probexit.assets import default_paths

    model = Path(os.environ.get("PROBEXIT_TEST_MODEL") or default_paths().policy)
    return model if (model / "config.json").is_file() else None


def make_probe(model_dir: Path, out: Path, bias: float, default_threshold: float = 0.5) -> Path:
    import torch

    from probexit.probes.fingerprint import model_identity
    from probexit.probes.probe import Probe, ProbeConfig, ProbeModel

    hidden = json.loads((model_dir / "config.json").read_text())["hidden_size"]
    module = ProbeModel(hidden, 0, torch.zeros(hidden), torch.ones(hidden))
    with torch.no_grad():
        module.net.weight.zero_()
        module.net.bias.fill_(bias)
    config = ProbeConfig(
        kind="linear", hidden_size=hidden, width=0, model=model_identity(model_dir), default_threshold=default_threshold
    )
    Probe(config, module.weights()).save(out)
    return out


def server_env(tmp: Path) -> dict:
    env = dict(
        os.environ,
        OMP_WAIT_POLICY="PASSIVE",
        VLLM_CPU_KVCACHE_SPACE="1",
        VLLM_RPC_BASE_PATH=str(tmp),
        PYTHONUNBUFFERED="1",
    )
    env.pop("PROBEXIT_API_KEY", None)
    return env


class ServerFailed(RuntimeError):
    pass


@dataclass
class Server:
    base_url: str
    api_key: str
    model: str
    model_dir: Path
    process: subprocess.Popen
    log: Path
    start_seconds: float

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=30, **kwargs)

    def post(self, path: str, body: dict, key: str | None = "default", **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key if key == 'default' else key}"} if key else {}
        timeout = kwargs.pop("timeout", 120)
        return httpx.post(self.base_url + path, json=body, headers=headers, timeout=timeout, **kwargs)

    def metric(self, name: str, **labels) -> float:
        """The sum of a metric's samples whose labels include `labels`."""
        total = 0.0
        for line in self.get("/metrics").text.splitlines():
            named = line.startswith(name + "{") or line.startswith(name + " ")
            if named and all(f'{key}="{value}"' in line for key, value in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def wait_until_healthy(instance: Server, started: float) -> None:
    while time.monotonic() - started < START_TIMEOUT_S:
        if instance.process.poll() is not None:
            raise ServerFailed(f"the server exited with {instance.process.returncode}:\n{instance.log_tail()}")
        try:
            if instance.get("/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ServerFailed(f"the server did not become healthy in {START_TIMEOUT_S} s:\n{instance.log_tail()}")


@contextlib.contextmanager
def running(instance: Server, started: float) -> Iterator[Server]:
    """A launched server once healthy (the test fails with its log tail if it never is), stopped afterwards; its
    start_seconds counted from `started`."""
    try:
        try:
            wait_until_healthy(instance, started)
        except ServerFailed as error:
            pytest.fail(str(error))
        instance.start_seconds = time.monotonic() - started
        yield instance
    finally:
        stop(instance)


def launch(model_dir: Path, tmp: Path, probe: Path, *extra: str) -> Server:
    """`probexit serve` on the test model with the given probe, the test key and name, on a free port; returns
    at once (see `wait_until_healthy`). The log goes to tmp/server.log."""
    port, log = free_port(), tmp / "server.log"
    flags = ["--model", str(model_dir), "--probe", str(probe), "--api-key", API_KEY, "--served-model-name", MODEL_NAME]
    engine = [
        part for key, value in EMBEDDED_ENGINE_DEFAULTS.items() for part in (f"--{key.replace('_', '-')}", str(value))
    ]
    command = probexit_command(port, [*flags, *engine, *extra])
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=server_env(tmp))
    return Server(f"http://127.0.0.1:{port}", API_KEY, MODEL_NAME, model_dir, process, log, 0.0)


def stop(instance: Server) -> None:
    stop_process(instance.process)
