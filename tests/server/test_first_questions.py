"""What a newcomer asks first, right after `make serve`: the embedded default, started with no flags but a port and
a key, answers each question right when sampled greedily, with its own probe deciding when the thinking ends."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from probexit.benchmarks.servers import free_port, probexit_command
from tests.server.harness import API_KEY, Server, running, server_env

FIRST_QUESTIONS = [
    ("What is 2 + 2?", 4),
    ("What is 7 + 8?", 15),
    ("What is 100 - 37?", 63),
    ("Compute 45 + 17 - 9 + 3.", 56),
    ("What's 12 + 30?", 42),
    ("How much is 50 - 8?", 42),
    ("Calculate 9 + 10 - 4.", 15),
    ("What is 3 + 14 - 7?", 10),
    ("What is 2+2?", 4),
    ("What is 12+7-3?", 16),
    ("What is 10 plus 5?", 15),
    ("7 + 8?", 15),
]


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("default")
    port, log = free_port(), tmp / "server.log"
    started = time.monotonic()
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            probexit_command(port, ["--api-key", API_KEY]),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=server_env(tmp),
        )
    with running(Server(f"http://127.0.0.1:{port}", API_KEY, "tinyworld", None, process, log, 0.0), started) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("question, answer", FIRST_QUESTIONS, ids=[q for q, _ in FIRST_QUESTIONS])
def test_the_embedded_default_answers_the_first_questions_right(default_server, question, answer):
    body = {"messages": [{"role": "user", "content": question}], "temperature": 0, "max_tokens": 900}
    choice = default_server.post("/v1/chat/completions", body).json()["choices"][0]
    boxed = re.findall(r"\\boxed\{(-?\d+)\}", choice["message"]["content"] or "")
    assert boxed and int(boxed[-1]) == answer, (choice["message"], choice["early_exit"])
