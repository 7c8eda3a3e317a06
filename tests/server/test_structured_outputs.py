"""Structured outputs on the session server: `response_format` json_object and json_schema constrain the answer
only, after the thinking ends (whether the model ended it or early exit forced `</think>`), so the thinking is
the same text with or without a format; an invalid schema is a 400 naming it."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

QUESTION = "What is 3 + 14 - 7?"
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}, "checked": {"type": "boolean"}},
    "required": ["answer", "checked"],
    "additionalProperties": False,
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "result", "schema": SCHEMA, "strict": True}}
SAMPLED = {"temperature": 0.6, "seed": 7, "max_tokens": 600}


def chat(server, **fields) -> dict:
    response = server.post(
        "/v1/chat/completions", {"messages": [{"role": "user", "content": QUESTION}], **SAMPLED, **fields}
    )
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


def test_a_schema_answer_validates_after_an_early_exit(server):
    choice = chat(server, response_format=JSON_SCHEMA)
    assert choice["early_exit"]["triggered"] and choice["early_exit"]["reason"] == "probe"
    jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)
    assert choice["finish_reason"] == "stop"


def test_a_schema_answer_validates_when_the_model_ends_its_thinking(server):
    choice = chat(server, response_format=JSON_SCHEMA, early_exit={"enabled": False})
    assert not choice["early_exit"]["triggered"] and choice["early_exit"]["reasoning_tokens"] > 0
    jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)


@pytest.mark.parametrize("early_exit", [{"enabled": True}, {"enabled": False}], ids=["early-exit", "to-the-end"])
def test_the_thinking_is_the_same_text_with_or_without_a_format(server, early_exit):
    free = chat(server, early_exit=early_exit)
    constrained = chat(server, early_exit=early_exit, response_format=JSON_SCHEMA)
    assert constrained["message"]["reasoning_content"] == free["message"]["reasoning_content"]
    assert constrained["early_exit"] == free["early_exit"]
    assert "\\boxed" in free["message"]["content"] and json.loads(constrained["message"]["content"])


def test_json_object_is_any_object(server):
    content = chat(server, response_format={"type": "json_object"})["message"]["content"]
    assert isinstance(json.loads(content), dict)


def test_without_thinking_the_grammar_holds_from_the_first_token(server):
    choice = chat(server, response_format=JSON_SCHEMA, reasoning_effort="none")  # the template closes the thinking
    assert choice["message"]["reasoning_content"] is None and choice["early_exit"]["reasoning_tokens"] == 0
    jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)


def test_a_streamed_schema_answer_is_the_whole_one(server):
    whole = chat(server, response_format=JSON_SCHEMA)["message"]["content"]
    text = ""
    with httpx.stream(
        "POST",
        server.base_url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": QUESTION}], "stream": True, "response_format": JSON_SCHEMA}
        | SAMPLED,
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=120,
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                text += "".join(c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"])
    assert text == whole


@pytest.mark.parametrize(
    "response_format, param",
    [
        pytest.param(
            {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "nonsense"}}},
            "response_format.json_schema.schema",
            id="not-a-schema",
        ),
        pytest.param(
            {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "string", "pattern": "("}}},
            "response_format.json_schema.schema",
            id="uncompilable-pattern",
        ),
        pytest.param({"type": "json_schema"}, "response_format", id="schema-missing"),
        pytest.param(
            {"type": "json_schema", "json_schema": {"schema": SCHEMA}}, "response_format.json_schema.name", id="no-name"
        ),
        pytest.param({"type": "xml"}, "response_format.type", id="unknown-type"),
    ],
)
def test_a_bad_format_is_a_400_naming_it(server, response_format, param):
    response = server.post(
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": QUESTION}], "response_format": response_format, "max_tokens": 8},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
