"""The base of the generation endpoints' handlers: one object owns a request from its body to its last byte.

`OpenAIServing.handle` checks the request against the server (model name, engine alive, not shutting down),
plans its engine requests (every check that can fail happens there, before a stream could start with a 200),
then answers whole or streams server-sent events; either way a client that goes away has its engine
requests aborted at once. A subclass says how its body becomes prompts and how outputs become responses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from probexit.server.errors import APIError, engine_unavailable, to_api_error
from probexit.server.generation import Delta, GenerationCore, GenerationJob
from probexit.server.metrics import ServerMetrics
from probexit.server.protocol import SamplingRequest


class OpenAIServing:
    id_prefix: str  # of response ids: "chatcmpl", "cmpl"
    prompt_field: str  # the body field the prompts come from, for error messages

    def __init__(self, core: GenerationCore):
        self.core = core

    async def handle(self, body, request: Request):
        self._check_available(body)
        job = self.plan(body)
        if body.stream:
            # Starlette cancels the streaming task when the client disconnects, which closes the job.
            return StreamingResponse(
                sse(self.stream(job, body), self.core.metrics, self.frame), media_type="text/event-stream"
            )
        return await _unless_disconnected(request, self.complete(job, body))

    def plan(self, body: SamplingRequest) -> GenerationJob:
        """The request's engine work; every check that can fail on the request happens here."""
        check_stream_options(body)
        return self.core.plan(
            body,
            self.prompts(body),
            self.max_tokens(body),
            id_prefix=self.id_prefix,
            prompt_field=self.prompt_field,
            **self.plan_options(body),
        )

    # -- what each endpoint says -------------------------------------------------------------------------------
    def prompts(self, body) -> list[list[int]]:
        raise NotImplementedError

    def max_tokens(self, body) -> int | None:
        return body.max_tokens

    def plan_options(self, body) -> dict:
        """`GenerationCore.plan`'s keyword arguments that depend on the endpoint (log-probabilities, effort)."""
        return {}

    async def complete(self, job: GenerationJob, body) -> BaseModel:
        raise NotImplementedError

    def stream(self, job: GenerationJob, body) -> AsyncIterator[BaseModel]:
        raise NotImplementedError

    @staticmethod
    def frame(chunk: BaseModel) -> str:
        """A chunk as one server-sent event; a delta carries only what it has, yet the chunks set every top-level
        field."""
        return f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n"

    # -- shared ------------------------------------------------------------------------------------------------
    def _check_available(self, body) -> None:
        core = self.core
        if body.model is not None and body.model != core.model_name:
            raise APIError(
                404,
                f"The model `{body.model}` does not exist; this server serves `{core.model_name}`.",
                param="model",
                code="model_not_found",
            )
        if core.engine.errored:  # fail here, before a stream could start with a 200
            raise engine_unavailable()
        if core.closed_by is not None:  # shutting down
            raise core.closed_by

    async def stream_chunks(
        self, job: GenerationJob, include_usage: bool, make_chunk, choice_of, opening: list | None = None
    ) -> AsyncIterator[BaseModel]:
        """Response chunks for a streamed job: `opening` choices first (chat's role delta), then one chunk per
        delta that `choice_of` turns into a choice, then the usage chunk if the client asked."""
        usage = {"usage": None} if include_usage else {}  # OpenAI sends "usage": null on all chunks but the last
        if opening:
            yield make_chunk(choices=opening, **usage)
        deltas = self.core.run(job)
        try:
            async for delta in deltas:
                choice = choice_of(delta)
                if choice is not None:
                    yield make_chunk(choices=[choice], **usage)
        finally:
            await deltas.aclose()
        if include_usage:
            yield make_chunk(choices=[], usage=job.usage())


def check_stream_options(body) -> None:
    """`stream_options` without `stream` is a 400, as OpenAI answers (null is unset, and passes)."""
    if body.stream_options is not None and not body.stream:
        raise APIError(
            400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )


def choice_done(delta: Delta) -> dict:
    """The fields a choice carries on the chunk that finishes it."""
    return {"early_exit": delta.choice.report} if delta.choice.done else {}


async def sse(
    chunks: AsyncIterator[BaseModel], metrics: ServerMetrics, frame=OpenAIServing.frame
) -> AsyncIterator[str]:
    """Server-sent events from response chunks (`frame` writes each). An error after the 200 status went out
    becomes an error event in OpenAI's body, then `[DONE]`, as OpenAI's clients expect."""
    try:
        async for chunk in chunks:
            yield frame(chunk)
    except Exception as error:
        api_error = to_api_error(error)
        metrics.request_done("rejected" if api_error.status < 500 else "error")
        yield f"data: {api_error.body().model_dump_json()}\n\n"
    finally:
        await chunks.aclose()  # closes the job (aborting what is unfinished) even on a disconnect
    yield "data: [DONE]\n\n"


async def _unless_disconnected(request: Request, work):
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        watcher.cancel()
        return task.result()
    task.cancel()  # the job's cleanup aborts its engine requests
    return Response(status_code=499)  # nobody is listening; the status shows in the access log


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
