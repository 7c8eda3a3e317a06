"""Request and response schemas of the Responses API (`POST /v1/responses`), plus probexit's `early_exit`.

The request's fields follow OpenAI's; `input` items are checked one by one by the handler (`responses_input.py`
turns them into chat messages with these item classes), so that an item of a type this server does not take is a
400 that names the item and the types it takes. Nothing is stored: `previous_response_id`, `conversation` and
`background` are refused with the reason; `store` is accepted and the response says `store: false`.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator

from probexit.server.protocol import (
    FUNCTION_NAME_PATTERN,
    MAX_TOOLS,
    METADATA_MAX_PAIRS,
    REASONING_EFFORTS,
    SERVICE_TIERS,
    USER_ID_LENGTH,
    EarlyExitReport,
    EarlyExitRequest,
    OpenAIRequest,
    SamplingRequest,
)

ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning")  # the input items taken
MIN_OUTPUT_TOKENS = 16  # OpenAI refuses a smaller max_output_tokens
MAX_TOP_LOGPROBS = 20


# -- the request -----------------------------------------------------------------------------------------------
class ReasoningOptions(OpenAIRequest):
    effort: Literal[REASONING_EFFORTS] | None = None  # mapped onto early exit as chat's reasoning_effort is
    summary: Literal["auto", "concise", "detailed"] | None = None  # accepted: the thinking is returned whole
    generate_summary: Literal["auto", "concise", "detailed"] | None = None  # the older name of `summary`


class TextFormat(OpenAIRequest):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, pattern=FUNCTION_NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None  # accepted: the answer is always constrained to the schema

    @model_validator(mode="after")
    def _json_schema_fields(self):
        if self.type == "json_schema" and (self.name is None or self.schema_ is None):
            raise ValueError('a "json_schema" format needs "name" and "schema"')
        if self.type != "json_schema" and (self.name, self.schema_, self.strict) != (None, None, None):
            raise ValueError('"name", "schema" and "strict" go with type "json_schema" only')
        return self


class TextOptions(OpenAIRequest):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None  # accepted and ignored, as in chat


class FunctionTool(OpenAIRequest):
    type: Literal["function"]
    name: str = Field(pattern=FUNCTION_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema; the handler checks it
    strict: StrictBool | None = None

    @model_validator(mode="before")
    @classmethod
    def _function_tools_only(cls, data):
        if isinstance(data, dict) and data.get("type") != "function":
            raise ValueError(f"only function tools are served here, not {data.get('type')!r}")
        return data


class FunctionToolChoice(OpenAIRequest):
    type: Literal["function"]
    name: str


class StreamOptions(OpenAIRequest):
    include_obfuscation: StrictBool | None = None  # accepted: events carry no obfuscation padding


class ResponsesRequest(OpenAIRequest):
    model: str | None = None
    input: str | list[dict[str, Any]]  # items: checked by the handler (ITEM_TYPES)
    instructions: str | None = None
    reasoning: ReasoningOptions | None = None
    max_output_tokens: StrictInt | None = Field(default=None, ge=MIN_OUTPUT_TOKENS)  # thinking and answer together
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    text: TextOptions | None = None
    tools: list[FunctionTool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | FunctionToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    # served only at their neutral values (the handler says why otherwise)
    max_tool_calls: StrictInt | None = Field(default=None, ge=1)
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    early_exit: EarlyExitRequest | None = None
    # no state is kept here: the handler refuses these with the reason when they ask for it
    store: StrictBool | None = None
    previous_response_id: str | None = None
    prompt: dict[str, Any] | None = None  # a reusable prompt, stored at OpenAI
    conversation: str | dict[str, Any] | None = None
    background: StrictBool | None = None
    # OpenAI fields that change nothing here
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    metadata: dict[str, str] | None = Field(default=None, max_length=METADATA_MAX_PAIRS)
    user: str | None = Field(default=None, max_length=USER_ID_LENGTH)
    safety_identifier: str | None = Field(default=None, max_length=USER_ID_LENGTH)
    service_tier: Literal[SERVICE_TIERS] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_within_openais_limits(cls, metadata: dict[str, str] | None):
        return SamplingRequest._metadata_within_openais_limits(metadata)  # the chat API's check, written once


# -- input items -----------------------------------------------------------------------------------------------
class TextPart(OpenAIRequest):
    type: Literal["input_text", "output_text"]
    text: str
    annotations: list[Any] | None = None  # an earlier answer's, sent back; ignored
    logprobs: list[Any] | None = None


class RefusalPart(OpenAIRequest):
    type: Literal["refusal"]
    refusal: str


class MessageItem(OpenAIRequest):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[dict[str, Any]]  # parts: checked by the handler (only text reaches the model)
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    phase: str | None = None  # an earlier answer's, sent back; ignored


class FunctionCallItem(OpenAIRequest):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(OpenAIRequest):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[TextPart]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class SummaryText(OpenAIRequest):
    type: Literal["summary_text"]
    text: str


class ReasoningText(OpenAIRequest):
    type: Literal["reasoning_text"]
    text: str


class ReasoningInputItem(OpenAIRequest):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[SummaryText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None  # the thinking, as this server returns it
    encrypted_content: str | None = None  # another server's sealed thinking: this one cannot read it
    status: Literal["in_progress", "completed", "incomplete"] | None = None


ITEM_CLASSES = {
    "message": MessageItem,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
    "reasoning": ReasoningInputItem,
}


# -- the response ----------------------------------------------------------------------------------------------
class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    content: list[OutputText] = Field(default_factory=list)


class OutputReasoningText(BaseModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class OutputReasoning(BaseModel):
    type: Literal["reasoning"] = "reasoning"
    id: str
    summary: list[Any] = Field(default_factory=list)
    content: list[OutputReasoningText] = Field(default_factory=list)
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


class OutputFunctionCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


OutputItem = OutputMessage | OutputReasoning | OutputFunctionCall


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseObject(BaseModel):
    """A response, whole, and inside the stream's response.* events."""

    id: str
    object: Literal["response"] = "response"
    created_at: int = Field(default_factory=lambda: int(time.time()))
    status: Literal["completed", "incomplete", "in_progress", "failed"]
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    usage: ResponseUsage | None = None
    error: dict[str, Any] | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    store: bool = False  # nothing is stored, whatever the request said
    temperature: float | None = None
    top_p: float | None = None
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    tool_choice: Any = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    truncation: str = "disabled"
    metadata: dict[str, str] = Field(default_factory=dict)
    background: bool = False
    early_exit: EarlyExitReport | None = None  # how the thinking ended (docs/serving.md)


class ResponseEvent(BaseModel):
    """One server-sent event of a streamed response: its `type`, its place in the stream, and the fields of that
    type (OpenAI's names)."""

    model_config = ConfigDict(extra="allow")

    type: str
    sequence_number: int
