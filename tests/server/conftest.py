"""One real `probexit serve` process per test session, on the test model, with a probe that always fires
(see harness.py)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.server.harness import (API_KEY, MODEL_NAME, Server, ServerFailed, find_test_model, free_port, make_probe,
                                  server_env, wait_until_healthy)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    model_dir = find_test_model()
    if model_dir is None:
        pytest.skip("no test model: set PROBEXIT_TEST_MODEL to a model folder or build the embedded default")
    tmp = tmp_path_factory.mktemp("serve")
    probe = make_probe(model_dir, tmp / "probe", bias=20.0)
    port, log = free_port(), tmp / "server.log"
    command = [sys.executable, "-m", "probexit.cli", "serve", "--model", str(model_dir), "--probe", str(probe),
               "--port", str(port), "--api-key", API_KEY, "--served-model-name", MODEL_NAME,
               "--dtype", "float32", "--max-model-len", "1024"]
    started = time.monotonic()
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=server_env(tmp))
    instance = Server(f"http://127.0.0.1:{port}", API_KEY, MODEL_NAME, model_dir, process, log, 0.0)
    try:
        try:
            wait_until_healthy(instance, started)
        except ServerFailed as error:
            pytest.fail(str(error))
        instance.start_seconds = time.monotonic() - started
        yield instance
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def async_client(server):
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0, timeout=120)
