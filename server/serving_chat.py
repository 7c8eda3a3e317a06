"""`/v1/chat/completions`: messages through the model's own chat template, reasoning apart from content."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial

from probexit.server.errors import APIError
from probexit.server.generation import Delta, GenerationJob
from probexit.server.protocol import (AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletionChunk,
                                      ChatCompletionRequest, ChatCompletionResponse, ChatMessage, DeltaMessage)
from probexit.server.serving import OpenAIServing, choice_done

# apply_chat_template's own arguments: a request must not replace what the server decides.
RESERVED_TEMPLATE_KWARGS = frozenset({"conversation", "messages", "tokenize", "add_generation_prompt",
                                      "chat_template", "return_dict", "return_tensors", "continue_final_message",
                                      "tokenizer_kwargs"})


class ServingChat(OpenAIServing):
    id_prefix, prompt_field = "chatcmpl", "messages"

    def prompts(self, body: ChatCompletionRequest) -> list[list[int]]:
        return [render_prompt(self.core.tokenizer, body)]

    def max_tokens(self, body: ChatCompletionRequest) -> int | None:
        return body.max_completion_tokens or body.max_tokens

    async def complete(self, job: GenerationJob) -> ChatCompletionResponse:
        joined = await self.core.collect(job)
        choices = [ChatChoice(index=choice.index, finish_reason=choice.finish_reason, early_exit=choice.report,
                              message=AssistantMessage(content=joined[choice.index].content,
                                                       reasoning_content=joined[choice.index].reasoning or None))
                   for choice in job.choices]
        return ChatCompletionResponse(id=job.request_id, model=job.model, choices=choices, usage=job.usage())

    def stream(self, job: GenerationJob, include_usage: bool) -> AsyncIterator[ChatCompletionChunk]:
        make_chunk = partial(ChatCompletionChunk, id=job.request_id, object="chat.completion.chunk",
                             created=int(time.time()), model=job.model)
        opening = [ChatChunkChoice(index=choice.index, delta=DeltaMessage(role="assistant", content=""),
                                   finish_reason=None) for choice in job.choices]
        return self.stream_chunks(job, include_usage, make_chunk, _chunk_choice, opening)


def _chunk_choice(delta: Delta) -> ChatChunkChoice | None:
    choice = delta.choice
    if not (delta.reasoning or delta.content or choice.done):
        return None  # a token that only closed thinking, or text the engine holds back for now
    message = DeltaMessage(**{key: value for key, value in (("reasoning_content", delta.reasoning),
                                                            ("content", delta.content)) if value})
    return ChatChunkChoice(index=choice.index, delta=message, finish_reason=choice.finish_reason, **choice_done(delta))


def render_prompt(tokenizer, request: ChatCompletionRequest) -> list[int]:
    """The model's chat template over the messages (with the request's template switches, such as Qwen3's
    `enable_thinking`), tokenized as the template wrote it: it already holds any BOS token."""
    kwargs = dict(request.chat_template_kwargs or {})
    reserved = sorted(RESERVED_TEMPLATE_KWARGS & set(kwargs))
    if reserved:
        raise APIError(400, f"chat_template_kwargs: {reserved[0]!r} is set by the server", param="chat_template_kwargs")
    messages = [{"role": message.role, "content": _text(message, index)}
                for index, message in enumerate(request.messages)]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
    except Exception as error:  # jinja's TemplateError (e.g. "roles must alternate"), a template's raise_exception
        raise APIError(400, f"messages: the model's chat template refused them: {error}", param="messages") from error
    return tokenizer.encode(text, add_special_tokens=False)


def _text(message: ChatMessage, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    parts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise APIError(400, f"messages.{index}.content: only text parts are supported, got {part.type!r}",
                           param=f"messages.{index}.content")
        parts.append(part.text)
    return "".join(parts)
