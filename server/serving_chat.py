"""`/v1/chat/completions`: messages through the model's own chat template, reasoning apart from content.

The thinking is returned in both `reasoning_content` (DeepSeek, SGLang) and `reasoning` (vLLM, OpenRouter), the
same text, on the message and on stream deltas. Fields that would change the answer in a way this server cannot
honour are refused here with the reason (`UNSUPPORTED`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial

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
    }
)
THINKING_SWITCH = "enable_thinking"  # the chat-template variable that turns thinking off (Qwen3 and others)
# Fields whose presence would change the answer in ways this server does not implement.
UNSUPPORTED = {
    "tools": "tool calling needs a tool parser, which this server does not run",
    "functions": "function calling needs a tool parser, which this server does not run",
    "function_call": "function calling needs a tool parser, which this server does not run",
    "audio": "this server answers in text only",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search needs a search tool, which this server does not run",
}


class ServingChat(OpenAIServing):
    id_prefix, prompt_field = "chatcmpl", "messages"

    def prompts(self, body: ChatCompletionRequest) -> list[list[int]]:
        _check_supported(body)
        return [render_prompt(self.core.tokenizer, body)]

    def max_tokens(self, body: ChatCompletionRequest) -> int | None:
        return body.max_completion_tokens or body.max_tokens

    def plan_options(self, body: ChatCompletionRequest) -> dict:
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs: needs logprobs: true", param="top_logprobs")
        return {"logprobs": (body.top_logprobs or 0) if body.logprobs else None, "effort": body.reasoning_effort}

    async def complete(self, job: GenerationJob) -> ChatCompletionResponse:
        joined = await self.core.collect(job)
        choices = []
        for choice in job.choices:
            whole = joined[choice.index]
            reasoning = whole.reasoning or None
            choices.append(
                ChatChoice(
                    index=choice.index,
                    finish_reason=choice.finish_reason,
                    early_exit=choice.report,
                    message=AssistantMessage(content=whole.content, reasoning_content=reasoning, reasoning=reasoning),
                    logprobs=self._logprobs(choice, whole.token_ids, whole.logprobs),
                )
            )
        return ChatCompletionResponse(id=job.request_id, model=job.model, choices=choices, usage=job.usage())

    def stream(self, job: GenerationJob, include_usage: bool) -> AsyncIterator[ChatCompletionChunk]:
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
        return self.stream_chunks(job, include_usage, make_chunk, self._chunk_choice, opening)

    def _chunk_choice(self, delta: Delta) -> ChatChunkChoice | None:
        choice = delta.choice
        if not (delta.reasoning or delta.content or choice.done or delta.logprobs):
            return None  # a token that only closed thinking, or text the engine holds back for now
        fields = {
            key: value
            for key, value in (
                ("reasoning_content", delta.reasoning),
                ("reasoning", delta.reasoning),
                ("content", delta.content),
            )
            if value
        }
        extra = {"logprobs": self._logprobs(choice, delta.token_ids, delta.logprobs)} if delta.logprobs else {}
        return ChatChunkChoice(
            index=choice.index,
            delta=DeltaMessage(**fields),
            finish_reason=choice.finish_reason,
            **choice_done(delta),
            **extra,
        )

    def _logprobs(self, choice, token_ids: list[int], steps: list | None):
        if steps is None:
            return None
        return chat_logprobs(token_ids, steps, choice.params.logprobs, self.core.tokenizer)


def _check_supported(body: ChatCompletionRequest) -> None:
    for name, reason in UNSUPPORTED.items():
        if getattr(body, name) is not None:  # an empty object asks for the feature too (web search's defaults)
            raise APIError(400, f"{name}: {reason}", param=name)
    if body.tool_choice not in (None, "none", "auto"):
        raise APIError(400, f"tool_choice: {UNSUPPORTED['tools']}", param="tool_choice")
    if body.response_format is not None and body.response_format.get("type") != "text":
        raise APIError(
            400,
            'response_format: only {"type": "text"} is supported (structured outputs would constrain the thinking too)',
            param="response_format",
        )
    if body.modalities is not None and set(body.modalities) != {"text"}:
        raise APIError(400, "modalities: this server answers in text only", param="modalities")


def render_prompt(tokenizer, request: ChatCompletionRequest) -> list[int]:
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
    messages = template_messages(request.messages)
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
    except Exception as error:  # jinja's TemplateError (e.g. "roles must alternate"), a template's raise_exception
        raise APIError(400, f"messages: the model's chat template refused them: {error}", param="messages") from error
    return tokenizer.encode(text, add_special_tokens=False)
