"""`/v1/responses`: the Responses API, a thin translation onto the chat machinery.

The request becomes the chat request it asks for (`responses_input.py`) and runs through the same planning, engine
requests, early exit and tool-call reading as `/v1/chat/completions`; only the shape of the answer differs. The
output is a list of items: the thinking as a `reasoning` item (its text in `content`, as `reasoning_text`), the
answer as a `message` item, and each tool call as a `function_call` item. `usage.output_tokens_details
.reasoning_tokens` counts the thinking, and `early_exit` (beside `output`) says how it ended.

Streamed, the same items are built by OpenAI's typed events: `response.created` and `response.in_progress`, then
per item `response.output_item.added`, its deltas (`response.reasoning_text.delta`, `response.output_text.delta`,
`response.function_call_arguments.delta`) and its closing events, and last `response.completed` (or
`response.incomplete` when `max_output_tokens` cut the answer) with the whole response.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from pydantic import BaseModel

from probexit.engine.tools import ToolCallDelta
from probexit.server.answer_format import RESPONSES_PARAMS
from probexit.server.generation import GenerationJob
from probexit.server.protocol_responses import (
    IncompleteDetails,
    OutputFunctionCall,
    OutputMessage,
    OutputReasoning,
    OutputReasoningText,
    OutputText,
    OutputTokensDetails,
    ResponseEvent,
    ResponseObject,
    ResponsesRequest,
    ResponseUsage,
)
from probexit.server.responses_input import chat_request
from probexit.server.serving import check_stream_options
from probexit.server.serving_chat import ServingChat


class ServingResponses(ServingChat):
    id_prefix, prompt_field = "resp", "input"
    answer_params, limit_field = RESPONSES_PARAMS, "max_output_tokens"

    def plan(self, body: ResponsesRequest) -> GenerationJob:
        check_stream_options(body)  # the chat request it becomes carries no stream options
        return super().plan(chat_request(body))

    async def complete(self, job: GenerationJob, body: ResponsesRequest) -> ResponseObject:
        joined = await self.core.collect(job)
        choice = job.choices[0]  # a Responses request is one choice
        whole = joined[choice.index]
        content, calls, finish_reason = self.read_answer(job, choice, whole.content)
        output = []
        if whole.reasoning:
            output.append(OutputReasoning(id=_item_id("rs"), content=[OutputReasoningText(text=whole.reasoning)]))
        if content:
            output.append(OutputMessage(id=_item_id("msg"), content=[OutputText(text=content)]))
        output += [
            OutputFunctionCall(id=_item_id("fc"), call_id=call.id, name=call.name, arguments=call.arguments)
            for call in calls
        ]
        return response_object(job, body, output, finish_reason)

    def stream(self, job: GenerationJob, body: ResponsesRequest) -> AsyncIterator[ResponseEvent]:
        return self._events(job, body)

    @staticmethod
    def frame(event: BaseModel) -> str:
        return f"event: {event.type}\ndata: {event.model_dump_json()}\n\n"

    async def _events(self, job: GenerationJob, body: ResponsesRequest) -> AsyncIterator[ResponseEvent]:
        items = OutputEvents()
        opening = response_object(job, body, [], None, status="in_progress")
        yield items.event("response.created", response=opening)
        yield items.event("response.in_progress", response=opening)
        reader, finish_reason = self.reader(job), None
        deltas = self.core.run(job)
        try:
            async for delta in deltas:
                content, pieces, finish_reason = self.answer_delta(job.answer, reader, delta)
                for event in [*items.reasoning(delta.reasoning), *items.text(content)]:
                    yield event
                for piece in pieces:
                    for event in items.call(piece):
                        yield event
        finally:
            await deltas.aclose()
        for event in items.close():
            yield event
        response = response_object(job, body, items.done, finish_reason)
        kind = "response.completed" if response.status == "completed" else "response.incomplete"
        yield items.event(kind, response=response)


def response_object(
    job: GenerationJob, body: ResponsesRequest, output: list, finish_reason: str | None, status: str | None = None
) -> ResponseObject:
    """The response with its `output`; its status, usage and early-exit report once the choice has finished."""
    finished = status is None
    cut = finished and finish_reason == "length"
    usage = job.usage() if finished else None
    text_format = body.text.format if body.text is not None and body.text.format is not None else None
    return ResponseObject(
        id=job.request_id,
        status=status or ("incomplete" if cut else "completed"),
        model=job.model,
        output=output,
        usage=None
        if usage is None
        else ResponseUsage(
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            output_tokens_details=OutputTokensDetails(
                reasoning_tokens=usage.completion_tokens_details.reasoning_tokens
            ),
        ),
        incomplete_details=IncompleteDetails(reason="max_output_tokens") if cut else None,
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        parallel_tool_calls=body.parallel_tool_calls is not False,
        reasoning={"effort": body.reasoning.effort if body.reasoning else None, "summary": None},
        temperature=body.temperature,
        top_p=body.top_p,
        text={"format": text_format.model_dump(by_alias=True, exclude_none=True) if text_format else {"type": "text"}},
        tool_choice=_dump(body.tool_choice) if body.tool_choice is not None else "auto",
        tools=[tool.model_dump(exclude_none=True) for tool in body.tools or []],
        truncation=body.truncation or "disabled",
        metadata=body.metadata or {},
        early_exit=job.choices[0].report if finished else None,
    )


class OutputEvents:
    """The typed events that build a response's output items while streaming: one item is open at a time; each is
    added, filled by deltas and closed (its text done, its part done, the item done) before the next opens."""

    def __init__(self):
        self.sequence = 0
        self.done: list = []  # the closed items, in output order
        self._open = None  # the item being filled
        self._key = None  # what it holds: "reasoning", "message" or ("call", index)
        self._text = ""

    def event(self, kind: str, **fields) -> ResponseEvent:
        self.sequence += 1
        return ResponseEvent(type=kind, sequence_number=self.sequence - 1, **fields)

    @property
    def _place(self) -> dict:
        return {"item_id": self._open.id, "output_index": len(self.done)}

    def reasoning(self, text: str) -> list[ResponseEvent]:
        if not text:
            return []
        events = self._switch("reasoning", lambda: OutputReasoning(id=_item_id("rs"), status="in_progress"))
        if len(events) > 0:
            events.append(self._part("added", {"type": "reasoning_text", "text": ""}))
        self._text += text
        return [*events, self.event("response.reasoning_text.delta", **self._place, content_index=0, delta=text)]

    def text(self, text: str) -> list[ResponseEvent]:
        if not text:
            return []
        events = self._switch("message", lambda: OutputMessage(id=_item_id("msg"), status="in_progress"))
        if len(events) > 0:
            events.append(self._part("added", OutputText(text="")))
        self._text += text
        return [
            *events,
            self.event("response.output_text.delta", **self._place, content_index=0, delta=text, logprobs=[]),
        ]

    def call(self, piece: ToolCallDelta) -> list[ResponseEvent]:
        events = []
        if piece.id is not None:  # a call's first piece opens its item
            item = OutputFunctionCall(
                id=_item_id("fc"), call_id=piece.id, name=piece.name or "", arguments="", status="in_progress"
            )
            events = self._switch(("call", piece.index), lambda: item)
        if not piece.arguments or self._key != ("call", piece.index):
            return events
        self._text += piece.arguments
        return [*events, self.event("response.function_call_arguments.delta", **self._place, delta=piece.arguments)]

    def close(self) -> list[ResponseEvent]:
        """The events that close the open item (none when nothing is open)."""
        if self._open is None:
            return []
        item, text, place = self._open, self._text, self._place
        if isinstance(item, OutputReasoning):
            item = item.model_copy(update={"status": "completed", "content": [OutputReasoningText(text=text)]})
            events = [
                self.event("response.reasoning_text.done", **place, content_index=0, text=text),
                self._part("done", {"type": "reasoning_text", "text": text}),
            ]
        elif isinstance(item, OutputMessage):
            item = item.model_copy(update={"status": "completed", "content": [OutputText(text=text)]})
            events = [
                self.event("response.output_text.done", **place, content_index=0, text=text, logprobs=[]),
                self._part("done", OutputText(text=text)),
            ]
        else:
            item = item.model_copy(update={"status": "completed", "arguments": text})
            events = [self.event("response.function_call_arguments.done", **place, arguments=text, name=item.name)]
        events.append(self.event("response.output_item.done", output_index=len(self.done), item=item))
        self.done.append(item)
        self._open, self._key, self._text = None, None, ""
        return events

    def _switch(self, key, make) -> list[ResponseEvent]:
        """Opens the item `key` unless it is the open one (the events: closing the previous, adding this)."""
        if self._key == key:
            return []
        events = self.close()
        self._open, self._key = make(), key
        events.append(self.event("response.output_item.added", output_index=len(self.done), item=self._open))
        return events

    def _part(self, stage: str, part) -> ResponseEvent:
        return self.event(f"response.content_part.{stage}", **self._place, content_index=0, part=part)


def _item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _dump(value):
    return value.model_dump() if isinstance(value, BaseModel) else value
