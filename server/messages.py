"""Chat messages as a model's chat template takes them, checked as strictly as OpenAI checks them.

The schema (`protocol.ChatMessage`) already refuses unknown fields and roles; this adds what depends on the role
(a `tool_call_id` belongs to a tool message, reasoning to an assistant turn), on the parts (only text reaches
the model) and on the order (a tool message answers a call that an earlier assistant turn made). A call's
arguments reach the template as an object where they parse as one: chat templates render them with `tojson`.
An assistant turn's thinking may come as `reasoning_content` or `reasoning` (both: the same text); it is handed to
the template as `reasoning_content`, and the template decides whether history keeps it (R1-style templates drop
it, others render it).
"""

from __future__ import annotations

import json

from probexit.server.errors import APIError
from probexit.server.protocol import ChatMessage

# The fields each role may carry besides `role` and `content`.
ROLE_FIELDS = {
    "system": {"name"},
    "developer": {"name"},
    "user": {"name"},
    "assistant": {"name", "reasoning_content", "reasoning", "tool_calls", "function_call", "refusal", "audio"},
    "tool": {"tool_call_id"},
    "function": {"name"},
}
PASSED_ON = ("name", "tool_calls", "tool_call_id", "function_call")  # what the template may read besides these


def template_messages(messages: list[ChatMessage], where: str = "messages") -> list[dict]:
    calls: set[str] = set()  # ids of the calls made so far
    plain = []
    for index, message in enumerate(messages):
        place = f"{where}.{index}"
        if message.role == "tool" and message.tool_call_id is not None and message.tool_call_id not in calls:
            raise APIError(
                400,
                f"{place}.tool_call_id: {message.tool_call_id!r} answers no call of an earlier assistant message",
                param=f"{place}.tool_call_id",
            )
        calls.update(call.id for call in message.tool_calls or [])
        plain.append(template_message(message, place))
    return plain


def template_message(message: ChatMessage, where: str) -> dict:
    given = message.model_fields_set - {"role", "content"}
    wrong = sorted(
        name for name in given if getattr(message, name) is not None and name not in ROLE_FIELDS[message.role]
    )
    if wrong:
        raise APIError(400, f"{where}.{wrong[0]}: not allowed in a {message.role} message", param=f"{where}.{wrong[0]}")
    if message.role == "tool" and message.tool_call_id is None:
        raise APIError(
            400, f"{where}.tool_call_id: a tool message names the call it answers", param=f"{where}.tool_call_id"
        )
    plain = {"role": message.role, "content": content_text(message, where)}
    plain.update({name: getattr(message, name) for name in PASSED_ON if getattr(message, name) is not None})
    if message.tool_calls is not None:
        plain["tool_calls"] = [_template_call(call.model_dump()) for call in message.tool_calls]
    reasoning = _reasoning(message, where)
    if reasoning is not None:
        plain["reasoning_content"] = reasoning
    return plain


def content_text(message: ChatMessage, where: str) -> str:
    """A message's content as one text; only text parts reach the model."""
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    texts = []
    for index, part in enumerate(message.content):
        if part.type != "text" or part.text is None:
            raise APIError(
                400,
                f"{where}.content.{index}: only text parts are supported, got {part.type!r}",
                param=f"{where}.content",
            )
        texts.append(part.text)
    return "".join(texts)


def _reasoning(message: ChatMessage, where: str) -> str | None:
    given = [text for text in (message.reasoning_content, message.reasoning) if text is not None]
    if len(given) == 2 and given[0] != given[1]:
        raise APIError(
            400,
            f"{where}.reasoning: differs from reasoning_content; give the thinking once, or the same text in both",
            param=f"{where}.reasoning",
        )
    return given[0] if given else None


def _template_call(call: dict) -> dict:
    try:
        arguments = json.loads(call["function"]["arguments"])
    except json.JSONDecodeError:
        return call  # the template gets the text as it was sent
    if isinstance(arguments, dict):
        call["function"]["arguments"] = arguments
    return call
