"""`/v1/chat/completions`: messages through the model's own chat template, reasoning apart from content.

The thinking is returned in both `reasoning_content` (DeepSeek, SGLang) and `reasoning` (vLLM, OpenRouter), the
same text, on the message and on stream deltas. Tool calls and response formats apply to the answer only
(`answer_format.py`): calls are read out of the answer, whole or as streamed `tool_calls` deltas in OpenAI's shape.
Fields that would change the answer in a way this server cannot honour are refused here with the reason
(`UNSUPPORTED`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial

from probexit.engine.tools import NAMED, ToolCall, ToolCallDelta, ToolCallReader
from probexit.server.answer_format import CHAT_PARAMS, AnswerPlan, plan_answer
from probexit.server.errors import APIError
from probexit.server.generation import Delta, GenerationJob
from probexit.server.logprobs import chat_logprobs
from probexit.server.messages import template_messages
from probexit.server.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    DeltaMessage,
    FunctionCallChunk,
    FunctionCallOut,
    ToolCallChunk,
    ToolCallOut,
)
from probexit.server.serving import OpenAIServing, choice_done

# apply_chat_template's own arguments: a request must not replace what the server decides.
RESERVED_TEMPLATE_KWARGS = frozenset(
    {
        "conversation",
        "messages",
        "tokenize",
        "add_generation_prompt",
        "chat_template",
        "return_dict",
        "return_tensors",
        "continue_final_message",
        "tokenizer_kwargs",
        "tools",
    }
)
THINKING_SWITCH = "enable_thinking"  # the chat-template variable that turns thinking off (Qwen3 and others)
# Fields whose presence would change the answer in ways this server does not implement.
UNSUPPORTED = {
    "functions": "the deprecated `functions` are not supported; send them as `tools`",
    "function_call": "the deprecated `function_call` is not supported; use `tool_choice`",
    "audio": "this server answers in text only",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search needs a search tool, which this server does not run",
}


class ServingChat(OpenAIServing):
    id_prefix, prompt_field = "chatcmpl", "messages"
    answer_params = CHAT_PARAMS  # where the answer's form sits in the request, for errors
    limit_field: str | None = None  # the request's name for the token limit (None: max_tokens or max_completion_tokens)

    def prompts(self, body: ChatCompletionRequest) -> list[list[int]]:
        _check_supported(body)
        return [render_prompt(self.core.tokenizer, body, self.prompt_field)]

    def max_tokens(self, body: ChatCompletionRequest) -> int | None:
        return body.max_completion_tokens or body.max_tokens

    def plan_options(self, body: ChatCompletionRequest) -> dict:
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs: needs logprobs: true", param="top_logprobs")
        answer = plan_answer(
            body.tools, body.tool_choice, body.parallel_tool_calls, body.response_format, self.core, self.answer_params
        )
        return {
            "logprobs": (body.top_logprobs or 0) if body.logprobs else None,
            "effort": body.reasoning_effort,
            "answer": answer,
            "limit_field": self.limit_field,
        }

    def reader(self, job: GenerationJob) -> ToolCallReader | None:
        """A fresh reader of one choice's tool calls (None: the request's answer is not read for calls)."""
        return job.answer.reader(self.core.tokenizer, self.core.setup.tool_parser)

    def read_answer(self, job: GenerationJob, choice, content: str) -> tuple[str | None, list[ToolCall], str | None]:
        """(content, tool calls, finish reason) of a choice's whole answer."""
        reader = self.reader(job)
        if reader is None:
            return content, [], choice.finish_reason
        content, calls = reader.read(content)
        calls = calls if job.answer.parallel else calls[:1]
        return content, calls, _finish_reason(job.answer, bool(calls), choice.finish_reason)

    @staticmethod
    def answer_delta(
        answer: AnswerPlan, reader: ToolCallReader | None, delta: Delta
    ) -> tuple[str, list[ToolCallDelta], str | None]:
        """(content, tool-call pieces, finish reason) that a streamed delta adds to its choice's answer."""
        choice = delta.choice
        if reader is None:
            return delta.content, [], choice.finish_reason
        content, pieces = reader.feed(delta.content, delta.content_ids)
        pieces += reader.finish() if choice.done else []
        pieces = [piece for piece in pieces if answer.parallel or piece.index == 0]
        return content, pieces, _finish_reason(answer, reader.count > 0, choice.finish_reason)

    async def complete(self, job: GenerationJob, body: ChatCompletionRequest) -> ChatCompletionResponse:
        joined = await self.core.collect(job)
        choices = []
        for choice in job.choices:
            whole = joined[choice.index]
            reasoning = whole.reasoning or None
            content, calls, finish_reason = self.read_answer(job, choice, whole.content)
            message = AssistantMessage(
                content=content,
                reasoning_content=reasoning,
                reasoning=reasoning,
                tool_calls=[
                    ToolCallOut(id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments)) for c in calls
                ]
                or None,
            )
            choices.append(
                ChatChoice(
                    index=choice.index,
                    finish_reason=finish_reason,
                    early_exit=choice.report,
                    message=message,
                    logprobs=self._logprobs(choice, whole.token_ids, whole.logprobs),
                )
            )
        return ChatCompletionResponse(id=job.request_id, model=job.model, choices=choices, usage=job.usage())

    def stream(self, job: GenerationJob, body: ChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]:
        make_chunk = partial(
            ChatCompletionChunk,
            id=job.request_id,
            object="chat.completion.chunk",
            created=int(time.time()),
            model=job.model,
        )
        opening = [
            ChatChunkChoice(index=choice.index, delta=DeltaMessage(role="assistant", content=""), finish_reason=None)
            for choice in job.choices
        ]
        readers = {choice.index: self.reader(job) for choice in job.choices}
        chunk_choice = partial(self._chunk_choice, job.answer, readers)
        return self.stream_chunks(job, body.include_usage, make_chunk, chunk_choice, opening)

    def _chunk_choice(self, answer: AnswerPlan, readers: dict, delta: Delta) -> ChatChunkChoice | None:
        choice = delta.choice
        content, pieces, finish_reason = self.answer_delta(answer, readers[choice.index], delta)
        if not (delta.reasoning or content or pieces or choice.done or delta.logprobs):
            return None  # a token that only closed thinking, or text the engine holds back for now
        fields = {
            key: value
            for key, value in (
                ("reasoning_content", delta.reasoning),
                ("reasoning", delta.reasoning),
                ("content", content),
                ("tool_calls", [_call_chunk(piece) for piece in pieces]),
            )
            if value
        }
        extra = {"logprobs": self._logprobs(choice, delta.token_ids, delta.logprobs)} if delta.logprobs else {}
        return ChatChunkChoice(
            index=choice.index,
            delta=DeltaMessage(**fields),
            finish_reason=finish_reason,
            **choice_done(delta),
            **extra,
        )

    def _logprobs(self, choice, token_ids: list[int], steps: list | None):
        if steps is None:
            return None
        return chat_logprobs(token_ids, steps, choice.params.logprobs, self.core.tokenizer)


def _finish_reason(answer: AnswerPlan, called: bool, finish_reason: str | None) -> str | None:
    """OpenAI's: "tool_calls" when the model chose to call (auto, required), "stop" for a named function."""
    if called and finish_reason == "stop" and answer.tool_mode != NAMED:
        return "tool_calls"
    return finish_reason


def _call_chunk(piece: ToolCallDelta) -> ToolCallChunk:
    """Only what the piece carries: a delta leaves out what it does not change."""
    function = {"name": piece.name} if piece.name else {}
    if piece.arguments or piece.id is not None:
        function["arguments"] = piece.arguments
    header = {"id": piece.id, "type": "function"} if piece.id is not None else {}
    return ToolCallChunk(index=piece.index, function=FunctionCallChunk(**function), **header)


def _check_supported(body: ChatCompletionRequest) -> None:
    for name, reason in UNSUPPORTED.items():
        if getattr(body, name) is not None:  # an empty object asks for the feature too (web search's defaults)
            raise APIError(400, f"{name}: {reason}", param=name)
    if body.modalities is not None and set(body.modalities) != {"text"}:
        raise APIError(400, "modalities: this server answers in text only", param="modalities")


def render_prompt(tokenizer, request: ChatCompletionRequest, field: str = "messages") -> list[int]:
    """The model's chat template over the messages (with the request's template switches, such as Qwen3's
    `enable_thinking`), tokenized as the template wrote it: it already holds any BOS token."""
    kwargs = dict(request.chat_template_kwargs or {})
    reserved = sorted(RESERVED_TEMPLATE_KWARGS & set(kwargs))
    if reserved:
        raise APIError(400, f"chat_template_kwargs: {reserved[0]!r} is set by the server", param="chat_template_kwargs")
    if (
        request.reasoning_effort == "none"
        and request.early_exit is None
        and THINKING_SWITCH in str(tokenizer.chat_template or "")
    ):
        kwargs.setdefault(THINKING_SWITCH, False)
    messages = template_messages(request.messages, field)
    if request.tools:  # templates that know tools describe them to the model
        kwargs["tools"] = [tool.model_dump(exclude_none=True) for tool in request.tools]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
    except Exception as error:  # jinja's TemplateError (e.g. "roles must alternate"), a template's raise_exception
        raise APIError(400, f"{field}: the model's chat template refused them: {error}", param=field) from error
    return tokenizer.encode(text, add_special_tokens=False)
