"""A Responses API request as the chat request it asks for, so that both APIs run on one chat machinery.

`instructions` become a leading system message; `input` (a string, or items) becomes the messages:
- a `message` item is a chat message (text parts only);
- a `reasoning` item's thinking goes to the assistant turn that follows it (`reasoning_content`), as an assistant
  message's thinking does in chat;
- `function_call` items are the `tool_calls` of an assistant turn (the preceding assistant message's, when they
  follow one), and a `function_call_output` is a tool message that must answer one of them;
- any other item type is a 400 that names it and the types taken (`item_reference` too: nothing is stored here).
`text.format`, `tools`, `tool_choice`, `reasoning.effort` and `max_output_tokens` become chat's `response_format`,
`tools`, `tool_choice`, `reasoning_effort` and `max_completion_tokens`.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from probexit.server.errors import APIError, to_api_error
from probexit.server.protocol import ChatCompletionRequest
from probexit.server.protocol_responses import (
    ITEM_CLASSES,
    ITEM_TYPES,
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    ReasoningInputItem,
    ResponsesRequest,
    TextPart,
)

NO_STATE = "this server stores no responses or conversations; send the whole conversation in `input`"


def chat_request(body: ResponsesRequest) -> ChatCompletionRequest:
    _refuse_state(body)
    fields = {
        "model": body.model,
        "messages": input_messages(body),
        "stream": body.stream,
        "max_completion_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "reasoning_effort": body.reasoning.effort if body.reasoning is not None else None,
        "early_exit": body.early_exit,
        "tools": [_chat_tool(tool.model_dump(exclude_none=True)) for tool in body.tools] if body.tools else None,
        "tool_choice": _chat_tool_choice(body.tool_choice),
        "parallel_tool_calls": body.parallel_tool_calls,
        "response_format": _response_format(body),
    }
    try:
        return ChatCompletionRequest.model_validate({key: value for key, value in fields.items() if value is not None})
    except ValidationError as error:  # each field was checked in the Responses request's own terms already
        raise to_api_error(RequestValidationError(error.errors())) from None


def input_messages(body: ResponsesRequest) -> list[dict]:
    messages: list[dict] = []
    if body.instructions is not None:
        messages.append({"role": "system", "content": body.instructions})
    if isinstance(body.input, str):
        return [*messages, {"role": "user", "content": body.input}]
    calls: set[str] = set()
    thinking = None  # a reasoning item's text, waiting for the assistant turn it belongs to
    for index, raw in enumerate(body.input):
        item, where = _item(raw, index), f"input.{index}"
        if isinstance(item, ReasoningInputItem):
            thinking = "".join(part.text for part in item.content or []) or None
        elif isinstance(item, MessageItem):
            message = {"role": item.role, "content": _text(item.content, where)}
            if item.role == "assistant":
                thinking = _give_thinking(message, thinking)
            messages.append(message)
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            turn = messages[-1] if messages and messages[-1]["role"] == "assistant" else None
            if turn is None:
                turn = {"role": "assistant", "content": None}
                messages.append(turn)
            thinking = _give_thinking(turn, thinking)
            turn.setdefault("tool_calls", []).append(call)
            calls.add(item.call_id)
        elif isinstance(item, FunctionCallOutputItem):
            if item.call_id not in calls:
                raise APIError(
                    400,
                    f"{where}.call_id: {item.call_id!r} answers no function_call item before it",
                    param=f"{where}.call_id",
                )
            output = item.output if isinstance(item.output, str) else "".join(part.text for part in item.output)
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
    if not messages:
        raise APIError(400, "input: give at least one item (or a string)", param="input")
    return messages


def _refuse_state(body: ResponsesRequest) -> None:
    for name in ("previous_response_id", "conversation"):
        if getattr(body, name) is not None:
            raise APIError(400, f"{name}: {NO_STATE}", param=name)
    if body.prompt is not None:
        message = "prompt: reusable prompts are stored at OpenAI, not here; send the text in `input`"
        raise APIError(400, message, param="prompt")
    if body.max_tool_calls is not None:
        raise APIError(
            400,
            "max_tool_calls: each response here is one model turn, whose calls are bounded by tool_choice and "
            "parallel_tool_calls; send those instead",
            param="max_tool_calls",
        )
    if body.top_logprobs:
        raise APIError(
            400,
            "top_logprobs: log probabilities are served on /v1/chat/completions (logprobs, top_logprobs), not in "
            "Responses output here",
            param="top_logprobs",
        )
    if body.background:
        raise APIError(
            400, f"background: a background response is stored to be fetched later; {NO_STATE}", param="background"
        )


def _item(raw: dict, index: int):
    where = f"input.{index}"
    kind = raw.get("type", "message")  # an easy input message has no type
    if not isinstance(kind, str):
        raise APIError(400, f"{where}.type: an item's type is a string", param=f"{where}.type")
    if kind == "item_reference":
        raise APIError(400, f"{where}: an item reference points at a stored item; {NO_STATE}", param=where)
    if kind not in ITEM_CLASSES:
        raise APIError(
            400,
            f"{where}.type: {kind!r} is not an input item this server takes ({', '.join(ITEM_TYPES)})",
            param=f"{where}.type",
        )
    try:
        return ITEM_CLASSES[kind].model_validate(raw)
    except ValidationError as error:
        located = [{**detail, "loc": ("body", "input", index, *detail["loc"])} for detail in error.errors()]
        raise to_api_error(RequestValidationError(located)) from None


def _text(content: str | list[dict[str, Any]], where: str) -> str:
    """A message's text; only text parts (and an earlier answer's refusal) reach the model."""
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type")
        if kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
            continue
        if kind not in ("input_text", "output_text"):
            raise APIError(
                400, f"{where}.content.{index}: only text parts are supported, got {kind!r}", param=f"{where}.content"
            )
        try:
            texts.append(TextPart.model_validate(part).text)
        except ValidationError as error:
            located = [
                {**detail, "loc": ("body", *where.split("."), "content", index, *detail["loc"])}
                for detail in error.errors()
            ]
            raise to_api_error(RequestValidationError(located)) from None
    return "".join(texts)


def _give_thinking(turn: dict, thinking: str | None) -> None:
    """Gives an assistant turn the thinking that came before it (a turn keeps the first it got); nothing is left
    waiting afterwards."""
    if thinking is not None and "reasoning_content" not in turn:
        turn["reasoning_content"] = thinking


def _chat_tool(tool: dict) -> dict:
    return {"type": "function", "function": {key: value for key, value in tool.items() if key != "type"}}


def _chat_tool_choice(choice):
    if choice is None or isinstance(choice, str):
        return choice
    return {"type": "function", "function": {"name": choice.name}}


def _response_format(body: ResponsesRequest) -> dict | None:
    form = body.text.format if body.text is not None else None
    if form is None:
        return None
    if form.type != "json_schema":
        return {"type": form.type}
    schema = {"name": form.name, "schema": form.schema_, "description": form.description, "strict": form.strict}
    return {"type": "json_schema", "json_schema": {key: value for key, value in schema.items() if value is not None}}
