"""One real `probexit serve` process per test session, on the test model, with a probe that always fires
(see harness.py), an untrained reward-model folder and a tool parser; tests marked `kills_server` run after all
others."""

from __future__ import annotations

import time

import pytest

from tests.server.harness import Server, find_test_model, launch, make_probe, running
from tests.server.test_rewards import make_reward_folder

# Tests that leave the session server unusable (they kill its engine) carry this marker and run last.
KILLS_SERVER = "kills_server"
TOOL_PARSER_FLAGS = ("--enable-auto-tool-choice", "--tool-call-parser", "hermes")


def pytest_configure(config):
    config.addinivalue_line("markers", f"{KILLS_SERVER}: breaks the session server; runs after every other test")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker(KILLS_SERVER) is not None)  # stable: others keep their order


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    model_dir = find_test_model()
    if model_dir is None:
        pytest.skip("no test model: set PROBEXIT_TEST_MODEL to a model folder or build the embedded default")
    tmp = tmp_path_factory.mktemp("serve")
    started = time.monotonic()
    reward = make_reward_folder(model_dir, tmp / "reward")  # /v1/rewards live too (the fuzzer, the auth tests)
    instance = launch(
        model_dir,
        tmp,
        make_probe(model_dir, tmp / "probe", bias=20.0),
        "--reward-model",
        str(reward),
        *TOOL_PARSER_FLAGS,  # tool_choice auto reads answers with vLLM's hermes parser
    )
    with running(instance, started):
        yield instance


@pytest.fixture(scope="session")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def async_client(server):
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0, timeout=120)
