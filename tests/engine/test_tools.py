"""Tool calls read out of answers with vLLM's own parsers and schemas, whole and streamed; no engine needed."""

from __future__ import annotations

import json

import pytest

from probexit.engine.config import ConfigError
from probexit.engine.tools import AUTO, NAMED, REQUIRED, ToolCallReader, forced_call_schema, tool_parser_class
from tests.server.test_tools import ADD

NOTE = {"type": "function", "function": {"name": "note"}}  # no parameters: any object


@pytest.fixture(scope="module")
def tokenizer(test_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(test_model_dir)


def streamed(reader: ToolCallReader, text: str, size: int = 3) -> tuple[str, dict[int, dict]]:
    """Feeds `text` in pieces; returns the content and each call put together from its pieces."""
    content, calls = "", {}
    for start in range(0, len(text), size):
        piece_content, pieces = reader.feed(text[start : start + size], [])
        content += piece_content
        for piece in pieces:
            call = calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
            assert piece.id is None or call["id"] is None, "a call's id comes once, with its first piece"
            call["id"] = call["id"] or piece.id
            call["name"] = call["name"] or piece.name
            call["arguments"] += piece.arguments
    for piece in reader.finish():
        calls[piece.index]["arguments"] += piece.arguments
    return content, calls


def test_forced_schemas_are_vllms_own():
    required = forced_call_schema([ADD, NOTE], None, parallel=None)
    assert required["type"] == "array" and required["minItems"] == 1 and "maxItems" not in required
    names = [option["properties"]["name"]["enum"] for option in required["items"]["anyOf"]]
    assert names == [["add"], ["note"]]
    assert forced_call_schema([ADD], None, parallel=False)["maxItems"] == 1
    assert forced_call_schema([ADD, NOTE], "add", parallel=None) == ADD["function"]["parameters"]
    assert forced_call_schema([ADD, NOTE], "note", parallel=None) == {"type": "object", "properties": {}}


def test_a_named_answer_is_the_arguments_whole_and_streamed(tokenizer):
    answer = '{"a":3,"b":14}'
    content, calls = ToolCallReader(NAMED, [ADD], tokenizer, function="add").read(answer)
    assert content is None and [(call.name, call.arguments) for call in calls] == [("add", answer)]
    content, pieces = streamed(ToolCallReader(NAMED, [ADD], tokenizer, function="add"), answer)
    assert content == "" and list(pieces) == [0]
    assert pieces[0]["name"] == "add" and pieces[0]["arguments"] == answer and pieces[0]["id"]


def test_a_required_answer_is_a_list_of_calls_whole_and_streamed(tokenizer):
    answer = '[{"name":"add","parameters":{"a":3,"b":14}},{"name":"note","parameters":{}}]'
    content, calls = ToolCallReader(REQUIRED, [ADD, NOTE], tokenizer).read(answer)
    assert content is None
    assert [(call.name, json.loads(call.arguments)) for call in calls] == [("add", {"a": 3, "b": 14}), ("note", {})]
    content, pieces = streamed(ToolCallReader(REQUIRED, [ADD, NOTE], tokenizer), answer)
    assert [(pieces[i]["name"], json.loads(pieces[i]["arguments"])) for i in sorted(pieces)] == [
        ("add", {"a": 3, "b": 14}),
        ("note", {}),
    ]
    assert len({call["id"] for call in pieces.values()}) == 2


def test_an_answer_cut_short_is_content_not_a_call(tokenizer):
    cut = '[{"name":"add","parameters":{"a":3,"b'
    assert ToolCallReader(REQUIRED, [ADD], tokenizer).read(cut) == (cut, [])
    assert ToolCallReader(NAMED, [ADD], tokenizer, function="add").read("") == (None, [])


def test_auto_reads_the_models_own_format_with_the_named_parser(tokenizer):
    hermes = tool_parser_class("hermes")
    answer = 'Let me add. <tool_call>{"name": "add", "arguments": {"a": 3, "b": 14}}</tool_call>'
    content, calls = ToolCallReader(AUTO, [ADD], tokenizer, parser_class=hermes).read(answer)
    assert content.strip() == "Let me add." and [(call.name, json.loads(call.arguments)) for call in calls] == [
        ("add", {"a": 3, "b": 14})
    ]
    content, pieces = streamed(ToolCallReader(AUTO, [ADD], tokenizer, parser_class=hermes), answer)
    assert content.strip() == "Let me add."
    assert pieces[0]["name"] == "add" and json.loads(pieces[0]["arguments"]) == {"a": 3, "b": 14}
    plain = "The answer is \\boxed{17}."
    assert ToolCallReader(AUTO, [ADD], tokenizer, parser_class=hermes).read(plain) == (plain, [])
    assert streamed(ToolCallReader(AUTO, [ADD], tokenizer, parser_class=hermes), plain) == (plain, {})


def test_an_unknown_parser_is_a_config_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match="hermes"):
        tool_parser_class("no-such-parser")
