"""Tool calls read out of a choice's answer with vLLM's own tool parsers, whole or streamed.

Three ways a request may call tools (the server decides which from `tool_choice`):
- `auto`: the model decides; the answer is read with the parser named by `--tool-call-parser` (vLLM's registry:
  hermes, llama3_json, mistral, pythonic, ...), the answer's text around the calls stays content;
- `required`: the answer is constrained to a JSON array of `{"name", "parameters"}` objects (`forced_call_schema`:
  vLLM's own schema for it), each element a call;
- a named function: the answer is constrained to that function's parameters, and the whole answer is its
  arguments.
Only the answer is read: the thinking never reaches a parser, so reasoning cannot leak into arguments. Calls leave
this module as `ToolCall` and `ToolCallDelta`, never as vLLM's types.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from probexit.engine.config import ConfigError

AUTO, REQUIRED, NAMED = "auto", "required", "named"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (OpenAI's `function.arguments`)


@dataclass(frozen=True)
class ToolCallDelta:
    """A streamed piece of the call at `index`: its first piece has `id` and `name`, later ones more arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


def tool_parser_names() -> list[str]:
    from vllm.tool_parsers import ToolParserManager

    return ToolParserManager.list_registered()


def tool_parser_class(name: str):
    """vLLM's tool parser registered as `name`; ConfigError naming the registered ones otherwise."""
    from vllm.tool_parsers import ToolParserManager

    try:
        return ToolParserManager.get_tool_parser(name)
    except (KeyError, ImportError, TypeError) as error:
        raise ConfigError(
            f"--tool-call-parser {name}: not one of vLLM's tool parsers ({', '.join(tool_parser_names())})"
        ) from error


def forced_call_schema(tools: list[dict], function: str | None, parallel: bool | None) -> dict:
    """The JSON schema an answer must match to be the call(s) asked for: the named `function`'s parameters, or
    (None: `required`) an array of calls to any of `tools` (one call at most when `parallel` is False). `tools`
    are OpenAI's chat tool objects. vLLM's own construction, so that its `$defs` handling applies."""
    from vllm.entrypoints.openai.chat_completion.protocol import (
        ChatCompletionNamedToolChoiceParam,
        ChatCompletionToolsParam,
    )
    from vllm.tool_parsers.utils import get_json_schema_from_tools

    params = [ChatCompletionToolsParam.model_validate(copy.deepcopy(tool)) for tool in tools]
    choice = (
        "required"
        if function is None
        else ChatCompletionNamedToolChoiceParam.model_validate({"type": "function", "function": {"name": function}})
    )
    return get_json_schema_from_tools(tool_choice=choice, tools=params, parallel_tool_calls=parallel)


class ToolCallReader:
    """One choice's tool calls. `mode` is AUTO (with `parser_class`, vLLM's parser class), REQUIRED or NAMED (with
    `function`). Feed the answer whole (`read`) or in streamed pieces (`feed`, then `finish`)."""

    def __init__(self, mode: str, tools: list[dict], tokenizer, *, parser_class=None, function: str | None = None):
        self.mode, self.function, self._tokenizer = mode, function, tokenizer
        self.text = ""  # the answer so far
        self.count = 0  # calls started so far
        self._parser = self._request = None
        self._ids: list[int] = []
        if mode == AUTO:
            from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

            request = ChatCompletionRequest(messages=[], tools=copy.deepcopy(tools), tool_choice="auto")
            self._parser = parser_class(tokenizer, request.tools)
            self._request = self._parser.adjust_request(request)

    @property
    def skip_special_tokens(self) -> bool:
        """Whether the engine may drop special tokens from the text (a parser whose call markers are special
        tokens needs them kept)."""
        return self._request is None or self._request.skip_special_tokens

    def read(self, answer: str) -> tuple[str | None, list[ToolCall]]:
        """(the content left beside the calls, the calls) from a whole answer; an answer that is not the call
        (cut short by max_tokens) is returned as content, with no calls."""
        if self.mode == NAMED:
            return (None, [ToolCall(_call_id(), self.function, answer)]) if answer.strip() else (answer or None, [])
        if self.mode == REQUIRED:
            calls = _required_calls(answer)
            return (None, calls) if calls is not None else (answer or None, [])
        extracted = self._parser.extract_tool_calls(answer, self._request)
        if not extracted.tools_called:
            return answer or None, []
        calls = [ToolCall(call.id, call.function.name, call.function.arguments) for call in extracted.tool_calls]
        content = extracted.content if extracted.content and extracted.content.strip() else None
        return content, calls

    def feed(self, delta: str, delta_ids: list[int]) -> tuple[str, list[ToolCallDelta]]:
        """(content, call pieces) that a streamed piece of the answer adds."""
        from vllm.tool_parsers.streaming import (
            extract_named_tool_call_streaming,
            extract_required_tool_call_streaming,
        )

        previous, previous_ids = self.text, self._ids
        self.text, self._ids = previous + delta, previous_ids + list(delta_ids)
        if not delta:
            return "", []
        if self.mode == NAMED:
            message, _ = extract_named_tool_call_streaming(
                delta_text=delta,
                function_name=self.function,
                function_name_returned=self.count > 0,
                tool_call_idx=None,
                tool_call_id_type="random",
                tokenizer=self._tokenizer,
            )
        elif self.mode == REQUIRED:
            message, _ = extract_required_tool_call_streaming(
                previous_text=previous, current_text=self.text, tool_call_idx=None, tool_call_id_type="random"
            )
        else:
            message = self._parser.extract_tool_calls_streaming(
                previous, self.text, delta, previous_ids, self._ids, list(delta_ids), self._request
            )
        return self._pieces(message)

    def finish(self) -> list[ToolCallDelta]:
        """Argument text a streaming parser read but held back, sent with the choice's last chunk."""
        if self.mode != AUTO or not self.count:
            return []
        rest = self._parser.get_remaining_unstreamed_args()
        return [ToolCallDelta(self.count - 1, arguments=rest)] if rest else []

    def _pieces(self, message) -> tuple[str, list[ToolCallDelta]]:
        if message is None:
            return "", []
        pieces = []
        for call in message.tool_calls:
            function = call.function
            name = function.name if function is not None else None
            if call.id is not None or name:
                self.count = max(self.count, call.index + 1)
            pieces.append(
                ToolCallDelta(call.index, call.id, name, (function.arguments or "") if function is not None else "")
            )
        return message.content or "", pieces


def _required_calls(answer: str) -> list[ToolCall] | None:
    """The calls of a `required` answer (a JSON array of {"name", "parameters"}); None when it is not one. Each
    call's arguments are the model's own text of its parameters, exactly what the streamed pieces add up to."""
    from vllm.tool_parsers.streaming import extract_required_tool_call_streaming

    try:
        items = json.loads(answer)
    except json.JSONDecodeError:
        return None
    if not isinstance(items, list) or not all(
        isinstance(item, dict) and isinstance(item.get("name"), str) and "parameters" in item for item in items
    ):
        return None
    message, _ = extract_required_tool_call_streaming(
        previous_text="", current_text=answer, tool_call_idx=None, tool_call_id_type="random"
    )
    calls = message.tool_calls if message is not None else []
    return [ToolCall(call.id, call.function.name, call.function.arguments or "") for call in calls]


def _call_id() -> str:
    from vllm.renderers.chat_utils import make_tool_call_id

    return make_tool_call_id()
