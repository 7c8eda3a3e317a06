"""Tool calls on the session server: forced calls (required, a named function) are constrained to the tools'
schemas, so even the tiny model makes valid calls; `auto` reads the answer with the server's parser (the tiny
model just answers); the thinking never reaches the arguments; streamed calls arrive in OpenAI's delta shape and
add up to the whole answer's; bad tools and tool messages are 400s naming the field."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

QUESTION = "What is 3 + 14 - 7?"
# Bounded: the tiny model has never seen JSON, and an unbounded integer lets it write digits until max_tokens.
NUMBER = {"type": "integer", "minimum": -100, "maximum": 100}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Adds two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": NUMBER, "b": NUMBER},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
SUBTRACT = {
    "type": "function",
    "function": {**ADD["function"], "name": "subtract", "description": "Subtracts b from a."},
}
TOOLS = [ADD, SUBTRACT]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
NAMED = {"type": "function", "function": {"name": "subtract"}}
GREEDY = {"temperature": 0.0, "max_tokens": 400, "parallel_tool_calls": False}


def body(**fields) -> dict:
    return {"messages": [{"role": "user", "content": QUESTION}], "tools": TOOLS, **GREEDY, **fields}


def answer(server, **fields) -> dict:
    response = server.post("/v1/chat/completions", body(**fields))
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


def streamed(server, **fields) -> tuple[dict, str | None, list[dict]]:
    """The calls put together from a stream's deltas (by index), the last finish reason, and every delta."""
    calls, finish, deltas = {}, None, []
    with httpx.stream(
        "POST",
        server.base_url + "/v1/chat/completions",
        json=body(stream=True, **fields),
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=120,
    ) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[len("data: ") :])["choices"]:
                deltas.append(choice["delta"])
                finish = choice["finish_reason"] or finish
                for piece in choice["delta"].get("tool_calls", []):
                    call = calls.setdefault(piece["index"], {"id": None, "name": None, "arguments": ""})
                    if "id" in piece:  # the first piece of a call: id, type and name, as OpenAI sends them
                        assert call["id"] is None and piece["type"] == "function" and piece["function"]["name"]
                        call["id"], call["name"] = piece["id"], piece["function"]["name"]
                    call["arguments"] += piece["function"].get("arguments", "")
    return calls, finish, deltas


def valid_calls(message: dict) -> list[tuple[str, dict]]:
    calls = []
    for call in message["tool_calls"]:
        assert call["type"] == "function" and call["id"]
        arguments = json.loads(call["function"]["arguments"])
        jsonschema.validate(arguments, SCHEMAS[call["function"]["name"]])
        calls.append((call["function"]["name"], arguments))
    return calls


def test_required_makes_a_valid_call_after_the_thinking(server):
    choice = answer(server, tool_choice="required")
    message = choice["message"]
    assert len(valid_calls(message)) == 1 and message["content"] is None
    assert choice["finish_reason"] == "tool_calls"
    # the thinking is intact prose, and the probe ended it: the grammar started at the answer
    thinking = message["reasoning_content"]
    assert choice["early_exit"]["triggered"] and thinking.endswith("\n\n")
    assert "10" in thinking.rstrip().split("\n\n")[-1]
    assert message["reasoning_content"] not in message["tool_calls"][0]["function"]["arguments"]


def test_a_named_function_is_called_with_valid_arguments(server):
    choice = answer(server, tool_choice=NAMED)
    assert [name for name, _ in valid_calls(choice["message"])] == ["subtract"]
    assert choice["finish_reason"] == "stop" and choice["message"]["content"] is None  # as OpenAI answers


def test_forced_calls_hold_without_early_exit_too(server):
    choice = answer(server, tool_choice="required", early_exit={"enabled": False})
    assert len(valid_calls(choice["message"])) == 1 and not choice["early_exit"]["triggered"]


@pytest.mark.parametrize("choice", ["required", NAMED], ids=["required", "named"])
def test_streamed_calls_add_up_to_the_whole_answers(server, choice):
    whole = answer(server, tool_choice=choice)
    calls, finish, deltas = streamed(server, tool_choice=choice)
    expected = [(call["function"]["name"], call["function"]["arguments"]) for call in whole["message"]["tool_calls"]]
    assert [(calls[index]["name"], calls[index]["arguments"]) for index in sorted(calls)] == expected
    assert finish == whole["finish_reason"]
    assert not any(delta.get("content") for delta in deltas)  # the answer went into the call, not beside it
    reasoning = "".join(delta.get("reasoning_content", "") for delta in deltas)
    assert reasoning == whole["message"]["reasoning_content"]


def test_auto_reads_the_answer_and_the_tiny_model_just_answers(server):
    for fields in ({}, {"tool_choice": "auto"}, {"tool_choice": "none"}):
        choice = answer(server, **fields)
        assert "tool_calls" not in choice["message"] and "\\boxed{" in choice["message"]["content"]
        assert choice["finish_reason"] == "stop"
    calls, finish, deltas = streamed(server)
    assert calls == {} and finish == "stop" and "\\boxed{" in "".join(d.get("content") or "" for d in deltas)


def test_a_second_turn_carries_the_call_and_its_result(server):
    first = answer(server, tool_choice=NAMED)["message"]
    history = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": None, "tool_calls": first["tool_calls"]},
        {"role": "tool", "tool_call_id": first["tool_calls"][0]["id"], "content": "10"},
    ]
    response = server.post("/v1/chat/completions", {**body(), "messages": history})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


BAD = [
    pytest.param({"tool_choice": {"type": "function", "function": {"name": "divide"}}}, "tool_choice", id="unknown-fn"),
    pytest.param(
        {"tools": [{**ADD, "function": {**ADD["function"], "parameters": {"type": "nonsense"}}}]},
        "tools.0.function.parameters",
        id="parameters-not-a-schema",
    ),
    pytest.param(
        {"tools": [{**ADD, "function": {**ADD["function"], "parameters": "a and b"}}]},
        "tools.0.function.parameters",
        id="parameters-not-an-object",
    ),
    pytest.param(
        {"tools": [{**ADD, "function": {**ADD["function"], "name": "add two"}}]}, "tools.0.function.name", id="bad-name"
    ),
    pytest.param({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools.0.type", id="not-a-function"),
    pytest.param({"tools": []}, "tools", id="no-tools"),
    pytest.param({"tools": None, "tool_choice": "required"}, "tool_choice", id="choice-without-tools"),
    pytest.param({"tool_choice": "always"}, "tool_choice", id="unknown-choice"),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": QUESTION},
                {"role": "tool", "tool_call_id": "call_1", "content": "10"},
            ]
        },
        "messages.1.tool_call_id",
        id="tool-message-without-call",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "add"}}]},
            ]
        },
        "messages.1.tool_calls.0.function.arguments",
        id="call-without-arguments",
    ),
]


@pytest.mark.parametrize("fields, param", BAD)
def test_bad_tools_are_a_400_naming_the_field(server, fields, param):
    response = server.post("/v1/chat/completions", body(**fields))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
