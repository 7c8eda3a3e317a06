"""The clients people use, unmodified (only base URL, key and model name set), against the session server; their
answers must be the server's own (the same greedy request sent as plain HTTP).

- the official openai SDK: sync, async and streaming; tool calls (required and named), `chat.completions.parse`
  with a Pydantic model, and the Responses API (plain, streamed, a function tool and a second turn with its output);
- LangChain: `ChatOpenAI` for answers, tools (`bind_tools`) and `with_structured_output`, and `ChatDeepSeek`
  (built on langchain-openai) for the reasoning, which `ChatOpenAI` deliberately does not read from non-OpenAI
  servers;
- the OpenAI Agents SDK: one agent with one function tool, over the Responses API;
- lm-evaluation-harness: its `local-chat-completions` model on the repository's tiny-world task
  (benchmarks/lm_eval/tinyworld_arith.yaml: exact match on the boxed answer).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field

from tests.server.test_tools import ADD as ADD_TOOL

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


# -- tools, structured outputs and the Responses API ---------------------------------------------------------
ADD_PARAMETERS = ADD_TOOL["function"]["parameters"]
# Bounded as the tools' schemas are (the tiny model writes digits for as long as an unbounded integer lets it);
# at module level because the Agents SDK reads a tool's annotations by name.
SmallInt = Annotated[int, Field(ge=-100, le=100)]


def test_openai_sdk_tool_calls_required_and_named(server, client):
    import json

    messages = [{"role": "user", "content": QUESTION}]
    for choice in ("required", {"type": "function", "function": {"name": "add"}}):
        response = client.chat.completions.create(
            model=server.model,
            messages=messages,
            tools=[ADD_TOOL],
            tool_choice=choice,
            parallel_tool_calls=False,
            **GREEDY,
        )
        [call] = response.choices[0].message.tool_calls
        assert call.function.name == "add" and set(json.loads(call.function.arguments)) == {"a", "b"}


def test_openai_sdk_parses_a_pydantic_answer(server, client):
    from pydantic import BaseModel

    class Result(BaseModel):
        answer: int
        checked: bool

    response = client.chat.completions.parse(
        model=server.model, messages=[{"role": "user", "content": QUESTION}], response_format=Result, **GREEDY
    )
    assert isinstance(response.choices[0].message.parsed, Result)


def test_openai_sdk_responses_plain_streamed_and_with_a_function_tool(server, client):
    plain = client.responses.create(model=server.model, input=QUESTION, temperature=0.0, max_output_tokens=300)
    assert "\\boxed{" in plain.output_text and plain.usage.output_tokens_details.reasoning_tokens > 0
    assert plain.model_extra["early_exit"]["triggered"]
    with client.responses.stream(model=server.model, input=QUESTION, temperature=0.0, max_output_tokens=300) as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text == plain.output_text
    tool = {"type": "function", "name": "add", "description": "Adds a and b.", "parameters": ADD_PARAMETERS}
    first = client.responses.create(
        model=server.model,
        input=QUESTION,
        tools=[tool],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0.0,
        max_output_tokens=300,
    )
    [call] = [item for item in first.output if item.type == "function_call"]
    second = client.responses.create(
        model=server.model,
        input=[
            {"role": "user", "content": QUESTION},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": call.call_id, "output": "10"},
        ],
        tools=[tool],
        temperature=0.0,
        max_output_tokens=300,
    )
    assert second.status == "completed" and second.output_text


def test_langchain_binds_tools_and_structures_output(server):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class Result(BaseModel):
        answer: int

    model = ChatOpenAI(
        base_url=server.base_url + "/v1", api_key=server.api_key, model=server.model, temperature=0.0, max_tokens=300
    )
    message = model.bind_tools([ADD_TOOL], tool_choice="add", parallel_tool_calls=False).invoke(QUESTION)
    [call] = message.tool_calls
    assert call["name"] == "add" and set(call["args"]) == {"a", "b"}
    assert isinstance(model.with_structured_output(Result, method="json_schema").invoke(QUESTION), Result)


def test_the_openai_agents_sdk_runs_an_agent_with_a_function_tool(server):
    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # traces would go to OpenAI's servers
    called = []

    @function_tool
    def add(a: SmallInt, b: SmallInt) -> int:
        """Adds a and b."""
        called.append((a, b))
        return a + b

    client = AsyncOpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0)
    agent = Agent(
        name="calculator",
        instructions="Use the add tool, then answer.",
        tools=[add],
        model=OpenAIResponsesModel(model=server.model, openai_client=client),
        model_settings=ModelSettings(
            tool_choice="required", parallel_tool_calls=False, temperature=0.0, max_tokens=300
        ),
    )
    result = Runner.run_sync(agent, QUESTION, max_turns=4)
    # the call ran once, then the model answered from the tool's output (what it answers is the tiny model's affair)
    assert len(called) == 1 and len(result.raw_responses) == 2 and result.final_output.strip()
    assert [item.type for item in result.raw_responses[0].output] == ["reasoning", "function_call"]
