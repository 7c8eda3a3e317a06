"""Request and response schemas of the HTTP API (OpenAI's, plus probexit's `early_exit`).

An unknown top-level field is a 400 that names it, as OpenAI's API answers ("Unrecognized request
argument"), and so is an unknown setting inside `early_exit`: either would otherwise silently do nothing.
Messages and their parts tolerate extra fields (clients send back `name`, `tool_calls`, ...). Integers that
travel to the engine are bounded to what it can carry (int64). Responses carry `early_exit` per choice and
`reasoning_content` beside `content` in chat messages.
"""
from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="allow")


class EarlyExitRequest(BaseModel):
    """The `early_exit` object (docs/serving.md), plus `rule`, `k`, `budget` and `answer` (the oracle rule's gold
    answer) for running the peers' rules and the oracle live."""

    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool | None = None
    threshold: float | None = None
    max_risk: float | None = Field(default=None, ge=0.0, le=1.0)
    min_thinking_tokens: StrictInt | None = Field(default=None, ge=0, le=INT64_MAX)
    rule: str | None = None
    k: StrictInt | None = Field(default=None, ge=1, le=INT64_MAX)
    budget: StrictInt | None = Field(default=None, ge=1, le=INT64_MAX)
    answer: str | None = None


class StreamOptions(OpenAIRequest):
    include_usage: StrictBool | None = False


class SamplingRequest(OpenAIRequest):
    """The fields chat and completion requests share."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: StrictInt = Field(default=1, ge=1, le=128)
    seed: StrictInt | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logprobs: StrictBool | int | None = None  # not supported: a 400 if asked for
    early_exit: EarlyExitRequest | None = None
    # vLLM's sampling extensions, as `vllm serve` accepts them
    top_k: StrictInt | None = Field(default=None, ge=-1, le=INT64_MAX)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    min_tokens: StrictInt = Field(default=0, ge=0, le=INT64_MAX)
    ignore_eos: StrictBool = False
    user: str | None = None  # OpenAI's end-user id, accepted and unused

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ContentPart(OpenAIRequest):
    type: str
    text: str | None = None


class ChatMessage(OpenAIRequest):
    role: str
    content: str | list[ContentPart] | None = None


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)  # OpenAI's newer name for max_tokens
    chat_template_kwargs: dict[str, Any] | None = None  # e.g. {"enable_thinking": false} for Qwen3


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: StrictInt | None = Field(default=16, ge=1)  # OpenAI's completions default
    echo: StrictBool | None = None  # not supported: a 400 if true


# -- responses --------------------------------------------------------------------------------------------
class EarlyExitReport(BaseModel):
    triggered: bool
    score: float | None = None
    boundary: int | None = None
    reasoning_tokens: int = 0


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = None


class ChoiceBase(BaseModel):
    """What every choice, whole or streamed, chat or completion, carries besides its text."""

    index: int
    finish_reason: str | None = None
    logprobs: None = None
    early_exit: EarlyExitReport | None = None


class ChatChoice(ChoiceBase):
    message: AssistantMessage


def _now() -> int:
    return int(time.time())


class ResponseBase(BaseModel):
    """The fields of every response and chunk besides `object` and `choices`."""

    id: str
    created: int = Field(default_factory=_now)
    model: str
    usage: Usage | None = None


class ChatCompletionResponse(ResponseBase):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None


class ChatChunkChoice(ChoiceBase):
    delta: DeltaMessage


class ChatCompletionChunk(ResponseBase):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]


class CompletionChoice(ChoiceBase):
    text: str


class CompletionResponse(ResponseBase):
    """A whole completion, and each chunk of a streamed one (OpenAI uses the same object for both)."""

    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=_now)
    owned_by: str = "probexit"
    root: str | None = None
    max_model_len: int | None = None
    probexit: dict | None = None  # model_fingerprint and probe_fingerprint of what is served


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
