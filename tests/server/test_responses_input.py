"""A Responses request as the chat request it asks for: items become messages, thinking goes to its turn, calls
to theirs; no server needed."""

from __future__ import annotations

import pytest

from probexit.server.errors import APIError
from probexit.server.protocol_responses import ResponsesRequest
from probexit.server.responses_input import chat_request

CALL = {"type": "function_call", "call_id": "call_1", "name": "add", "arguments": '{"a":1,"b":2}'}
TOOL = {"type": "function", "name": "add", "parameters": {"type": "object"}, "strict": True}


def messages(**fields) -> list[dict]:
    request = chat_request(ResponsesRequest.model_validate(fields))
    return [message.model_dump(exclude_none=True) for message in request.messages]


def test_a_string_input_with_instructions():
    assert messages(input="What is 1 + 2?", instructions="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 1 + 2?"},
    ]


def test_thinking_and_calls_go_to_their_assistant_turns():
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "What is "}, {"type": "input_text", "text": "3?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Hmm."}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Let me add.", "annotations": []}],
        },
        CALL,
        {"type": "function_call_output", "call_id": "call_1", "output": "3"},
        {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "sealed"},  # unreadable: no thinking
        {**CALL, "call_id": "call_2"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "3"}]},
    ]
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a":1,"b":2}'}}
    assert messages(input=items) == [
        {"role": "user", "content": "What is 3?"},
        {"role": "assistant", "content": "Let me add.", "reasoning_content": "Hmm.", "tool_calls": [call]},
        {"role": "tool", "content": "3", "tool_call_id": "call_1"},
        {"role": "assistant", "tool_calls": [{**call, "id": "call_2"}]},
        {"role": "tool", "content": "3", "tool_call_id": "call_2"},
    ]


def test_tools_formats_and_effort_become_chats():
    request = chat_request(
        ResponsesRequest.model_validate(
            {
                "input": "hi",
                "tools": [TOOL],
                "tool_choice": {"type": "function", "name": "add"},
                "text": {"format": {"type": "json_schema", "name": "r", "schema": {"type": "object"}, "strict": True}},
                "reasoning": {"effort": "low", "summary": "auto"},
                "max_output_tokens": 50,
                "parallel_tool_calls": False,
            }
        )
    )
    assert request.tools[0].function.name == "add" and request.tool_choice.function.name == "add"
    assert request.response_format.json_schema.schema_ == {"type": "object"}
    assert (request.reasoning_effort, request.max_completion_tokens, request.parallel_tool_calls) == ("low", 50, False)


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"input": [{"type": "computer_call_output", "call_id": "c"}]}, "input.0.type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "1"}]}, "input.0.call_id"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input.0.content"),
        ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input.0.content.0.text"),
        ({"input": [{"role": "user", "content": "hi", "colour": "red"}]}, "input.0.colour"),
        ({"input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": "hi", "background": True}, "background"),
    ],
)
def test_what_cannot_be_served_names_its_place(fields, param):
    with pytest.raises(APIError) as caught:
        chat_request(ResponsesRequest.model_validate(fields))
    assert caught.value.status == 400 and caught.value.param == param
