"""Request and response schemas of the HTTP API (OpenAI's, plus probexit's `early_exit`).

An unknown field is a 400 that names it, as OpenAI's API answers ("Unrecognized request argument"), at the top
level, inside `early_exit`, in a message and in a content part: each would otherwise silently do nothing.
Fields that mainstream clients send by default are accepted (`store`, `metadata`, `user`, `service_tier`,
`parallel_tool_calls`, ...); those that would change the answer in a way this server cannot honour (`audio`,
`best_of`, ...) are accepted by the schema and refused by the handler with a 400 that says why. Tools, tool calls
and response formats have their own classes (the section "tools and structured outputs"). Integers that travel to
the engine are bounded to what it can carry (int64). Responses carry `early_exit` per choice and the thinking in
both `reasoning_content` and `reasoning` beside `content` in chat messages.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_serializer,
    model_validator,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_TOP_LOGPROBS = 20  # vLLM's default max_logprobs; OpenAI's limit for chat's top_logprobs too
MAX_COMPLETION_LOGPROBS = 5  # OpenAI's limit for the completions API's logprobs
MAX_STOP_SEQUENCES = 4
MAX_CHOICES_PER_PROMPT = 128  # OpenAI's limit on n (and on best_of)
# OpenAI's limits on `metadata`: at most 16 pairs, keys up to 64 characters, values up to 512.
METADATA_MAX_PAIRS, METADATA_KEY_LENGTH, METADATA_VALUE_LENGTH = 16, 64, 512
USER_ID_LENGTH = 128  # `user` and `safety_identifier`
SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority", "fast")
# OpenAI's values, and DeepSeek's `max` (its own scale ends there).
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


class OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data):
        """OpenAI reads a field sent as null as a field left out (SDKs serialise unset options so), so null takes
        each field's default here too; a required field sent as null is then missing, as OpenAI answers."""
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class EarlyExitRequest(OpenAIRequest):
    """The `early_exit` object (docs/serving.md), plus `rule`, `k`, `budget` and `answer` (the oracle rule's gold
    answer) for running the peers' rules and the oracle live."""

    enabled: StrictBool | None = None
    threshold: float | None = None
    max_risk: float | None = Field(default=None, ge=0.0, le=1.0)
    min_thinking_tokens: StrictInt | None = Field(default=None, ge=0, le=INT64_MAX)
    rule: str | None = None
    k: StrictInt | None = Field(default=None, ge=1, le=INT64_MAX)
    budget: StrictInt | None = Field(default=None, ge=1, le=INT64_MAX)
    answer: str | None = None
    shadow: StrictBool | None = None  # think to the end and report what early exit would have done


class StreamOptions(OpenAIRequest):
    include_usage: StrictBool | None = False


class SamplingRequest(OpenAIRequest):
    """The fields chat and completion requests share."""

    model: str | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: StrictInt = Field(default=1, ge=1, le=MAX_CHOICES_PER_PROMPT)
    seed: StrictInt | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)  # 0: the smallest nucleus, served as greedy
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None  # token id (as text) -> bias in [-100, 100]
    early_exit: EarlyExitRequest | None = None
    thinking_token_budget: StrictInt | None = Field(default=None, ge=1, le=INT64_MAX)  # vLLM's hard cap on thinking
    # vLLM's sampling extensions, as `vllm serve` accepts them
    top_k: StrictInt | None = Field(default=None, ge=-1, le=INT64_MAX)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    min_tokens: StrictInt = Field(default=0, ge=0, le=INT64_MAX)
    ignore_eos: StrictBool = False
    # OpenAI fields clients send that change nothing here (docs/serving.md says why each is ignored)
    user: str | None = Field(default=None, max_length=USER_ID_LENGTH)
    store: StrictBool | None = None
    metadata: dict[str, str] | None = Field(default=None, max_length=METADATA_MAX_PAIRS)
    service_tier: Literal[SERVICE_TIERS] | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stop_sequences(cls, stop: str | list[str] | None):
        if isinstance(stop, list) and len(stop) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(stop)}")
        return stop

    @field_validator("metadata")
    @classmethod
    def _metadata_within_openais_limits(cls, metadata: dict[str, str] | None):
        for key, value in (metadata or {}).items():
            if len(key) > METADATA_KEY_LENGTH:
                raise ValueError(
                    f"a metadata key is at most {METADATA_KEY_LENGTH} characters, {key[:20]!r}... has {len(key)}"
                )
            if len(value) > METADATA_VALUE_LENGTH:
                raise ValueError(f"metadata[{key!r}] is at most {METADATA_VALUE_LENGTH} characters, not {len(value)}")
        return metadata

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


# -- tools and structured outputs (request side) ---------------------------------------------------------
MAX_TOOLS = 128  # OpenAI's limit on `tools`
FUNCTION_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"  # OpenAI's rule for function and response-format names


class FunctionDefinition(OpenAIRequest):
    name: str = Field(pattern=FUNCTION_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema; the handler checks it
    strict: StrictBool | None = None  # accepted: a forced call is always constrained to the schema


class ChatTool(OpenAIRequest):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(OpenAIRequest):
    name: str


class NamedToolChoice(OpenAIRequest):
    type: Literal["function"]
    function: FunctionName


class CalledFunction(OpenAIRequest):
    name: str
    arguments: str  # JSON text


class MessageToolCall(OpenAIRequest):
    """A call an earlier assistant turn made, sent back in `messages`."""

    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


class JSONSchemaFormat(OpenAIRequest):
    name: str = Field(pattern=FUNCTION_NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")  # None: any JSON object
    strict: StrictBool | None = None  # accepted: the answer is always constrained to the schema


class ResponseFormat(OpenAIRequest):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self):
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError('"json_schema" goes with type "json_schema", and only with it')
        return self


class ContentPart(OpenAIRequest):
    """A part of a message's content; only text parts reach the model (the others are refused by name)."""

    type: Literal["text", "image_url", "input_audio", "file", "refusal"]
    text: str | None = None
    image_url: dict[str, Any] | None = None
    input_audio: dict[str, Any] | None = None
    file: dict[str, Any] | None = None
    refusal: str | None = None


class ChatMessage(OpenAIRequest):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    reasoning_content: str | None = None  # an assistant turn's thinking, as DeepSeek and SGLang name it
    reasoning: str | None = None  # the same, as vLLM and OpenRouter name it
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None
    function_call: dict[str, Any] | None = None
    refusal: str | None = None
    audio: dict[str, Any] | None = None


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)  # OpenAI's newer name for max_tokens
    chat_template_kwargs: dict[str, Any] | None = None  # e.g. {"enable_thinking": false} for Qwen3
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    reasoning_effort: str | None = None  # one of REASONING_EFFORTS, checked by the handler to name them
    response_format: ResponseFormat | None = None
    tools: list[ChatTool] | None = Field(default=None, min_length=1, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    # accepted so that the handler can refuse them with a reason, or ignore them where they change nothing
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    # OpenAI fields that change nothing here: caching hints, moderation, the answer's verbosity, who asks
    prompt_cache_key: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    moderation: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    safety_identifier: str | None = Field(default=None, max_length=USER_ID_LENGTH)


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: StrictInt | None = Field(default=16, ge=1)  # OpenAI's completions default
    logprobs: StrictInt | None = Field(default=None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    echo: StrictBool | None = None  # not supported: a 400 if true
    best_of: StrictInt | None = Field(default=None, ge=1, le=MAX_CHOICES_PER_PROMPT)  # not beyond n: a 400
    suffix: str | None = None  # not supported: a 400 if given


# -- responses --------------------------------------------------------------------------------------------
class EarlyExitReport(BaseModel):
    triggered: bool
    score: float | None = None
    boundary: int | None = None
    reasoning_tokens: int = 0
    # why thinking ended: "probe", "budget", "rule" (another exit rule), "length" (max_tokens cut it), or None
    # (the model ended it itself, or did not think)
    reason: Literal["probe", "budget", "rule", "length"] | None = None
    # a shadow request only (left out of every other report): what early exit would have done
    shadow: bool | None = None
    would_exit: bool | None = None
    would_save_tokens: int | None = None  # thinking tokens after the boundary where it would have exited
    answer_changed: bool | None = None  # the answer stated there differs from the final one (None: no exit)

    @model_serializer(mode="wrap")
    def _without_shadow_fields(self, handler):
        data = handler(self)
        if not self.shadow:
            for name in SHADOW_FIELDS:
                data.pop(name, None)
        return data


SHADOW_FIELDS = ("shadow", "would_exit", "would_save_tokens", "answer_changed")


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None  # the same text as reasoning_content
    tool_calls: list[ToolCallOut] | None = None  # left out of the body when no tool was called

    @model_serializer(mode="wrap")
    def _without_absent_calls(self, handler):
        data = handler(self)
        if data.get("tool_calls") is None:
            data.pop("tool_calls", None)
        return data


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None


class CompletionLogprobs(BaseModel):
    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)


class ChoiceBase(BaseModel):
    """What every choice, whole or streamed, chat or completion, carries besides its text."""

    index: int
    finish_reason: str | None = None
    early_exit: EarlyExitReport | None = None


class ChatChoice(ChoiceBase):
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None


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


class FunctionCallChunk(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallChunk(BaseModel):
    """A streamed piece of a tool call: its first piece carries `id`, `type` and the function's name."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallChunk


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None  # the same text as reasoning_content
    tool_calls: list[ToolCallChunk] | None = None


class ChatChunkChoice(ChoiceBase):
    delta: DeltaMessage
    logprobs: ChatLogprobs | None = None


class ChatCompletionChunk(ResponseBase):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]


class CompletionChoice(ChoiceBase):
    text: str
    logprobs: CompletionLogprobs | None = None


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
