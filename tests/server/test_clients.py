"""The clients people use, unmodified (only base URL, key and model name set), against the session server; their
answers must be the server's own (the same greedy request sent as plain HTTP).

- the official openai SDK: sync, async and streaming;
- LangChain: `ChatOpenAI` for answers, and `ChatDeepSeek` (built on langchain-openai) for the reasoning, which
  `ChatOpenAI` deliberately does not read from non-OpenAI servers;
- lm-evaluation-harness: its `local-chat-completions` model on the repository's tiny-world task
  (benchmarks/lm_eval/tinyworld_arith.yaml: exact match on the boxed answer).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What is 3 + 14 - 7?"
GREEDY = {"temperature": 0.0, "max_tokens": 300}


def own_answer(server, question: str = QUESTION, **fields) -> dict:
    """The server's answer to a plain HTTP request."""
    response = server.post(
        "/v1/chat/completions",
        {"model": server.model, "messages": [{"role": "user", "content": question}], **GREEDY, **fields},
    )
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]


def test_openai_sdk_sync_and_streaming(server, client):
    own = own_answer(server)
    messages = [{"role": "user", "content": QUESTION}]
    sync = client.chat.completions.create(model=server.model, messages=messages, **GREEDY).choices[0].message
    assert (sync.content, sync.model_extra["reasoning"]) == (own["content"], own["reasoning"])
    chunks = list(client.chat.completions.create(model=server.model, messages=messages, stream=True, **GREEDY))
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == own["content"]


async def test_openai_sdk_async(server, async_client):
    own = await asyncio.to_thread(own_answer, server)
    response = await async_client.chat.completions.create(
        model=server.model, messages=[{"role": "user", "content": QUESTION}], **GREEDY
    )
    assert response.choices[0].message.content == own["content"]


def test_langchain_reads_answers_and_reasoning(server):
    from langchain_deepseek import ChatDeepSeek
    from langchain_openai import ChatOpenAI

    own = own_answer(server)
    settings = {"api_key": server.api_key, "model": server.model, "temperature": 0.0, "max_tokens": 300}
    answer = ChatOpenAI(base_url=server.base_url + "/v1", **settings).invoke(QUESTION)
    assert answer.content == own["content"]
    reader = ChatDeepSeek(api_base=server.base_url + "/v1", **settings)
    message = reader.invoke(QUESTION)
    assert (message.content, message.additional_kwargs["reasoning_content"]) == (
        own["content"],
        own["reasoning_content"],
    )
    chunks = list(reader.stream(QUESTION))
    assert "".join(chunk.additional_kwargs.get("reasoning_content", "") for chunk in chunks) == own["reasoning"]


@pytest.mark.slow
def test_lm_evaluation_harness_scores_the_tiny_world_task_as_the_server_answers(server, monkeypatch, tmp_path):
    import json

    from lm_eval import simple_evaluate

    monkeypatch.chdir(ROOT)  # the task names its data relative to the repository root
    limit = 12
    results = simple_evaluate(
        model="local-chat-completions",
        tasks=["tinyworld_arith"],
        limit=limit,
        apply_chat_template=True,
        model_args={
            "base_url": server.base_url + "/v1/chat/completions",
            "model": server.model,
            "num_concurrent": 1,
            "max_retries": 1,
            "header": {"Authorization": f"Bearer {server.api_key}"},
        },
        task_manager=_task_manager(),
    )
    score = results["results"]["tinyworld_arith"]["exact_match,boxed"]
    problems = [json.loads(line) for line in (ROOT / "assets/tinyworld/problems/test.jsonl").read_text().splitlines()]
    right = 0
    for problem in problems[:limit]:
        content = own_answer(server, problem["question"], max_tokens=512)["content"]
        found = re.findall(r"\\boxed\{(-?\d+)\}", content)
        right += bool(found) and found[-1] == problem["answer"]
    assert score == pytest.approx(right / limit)


def _task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(ROOT / "benchmarks" / "lm_eval"))
