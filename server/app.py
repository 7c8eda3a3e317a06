"""The FastAPI application: `build_app(config)`, thin routers, one error mapping, the API-key check, and
the lifespan that starts and stops the engine and the early-exit event channel.

Nothing here is global: the engine, the probe, the reward model, the metrics and the generation core
live on `app.state`, so that several apps (tests) can exist in one process.
"""
from __future__ import annotations

import asyncio
import os
import secrets
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from probexit.server import early_exit, serving_chat, serving_completion, serving_rewards
from probexit.server.config import ServerConfig
from probexit.server.engine import engine_metrics, prepare, start_engine
from probexit.server.engine_adapter import EVENTS_ADDRESS_ENV
from probexit.server.errors import APIError, engine_unavailable, to_api_error
from probexit.server.events import EventCollector
from probexit.server.generation import Generation, GenerationCore, sse
from probexit.server.metrics import ServerMetrics
from probexit.server.protocol import (ChatCompletionRequest, CompletionRequest, ModelCard, ModelList,
                                      SamplingRequest)
from probexit.server.protocol_rewards import RewardRequest, RewardResponse

GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions")


def build_app(config: ServerConfig) -> FastAPI:
    """Checks everything that can fail on the user's input (raising ConfigError) and returns the app;
    the engine itself starts in the lifespan, before the server accepts connections."""
    setup = prepare(config)
    app = FastAPI(title="probexit", version="0.1.0", lifespan=_lifespan, docs_url=None, redoc_url=None)
    app.state.config, app.state.setup, app.state.probe = config, setup, setup.probe
    app.state.reward_model = serving_rewards.load_reward_model(config)  # None without --reward-model
    app.state.metrics = ServerMetrics(config.served_model_name)
    app.state.engine = app.state.collector = app.state.core = None
    app.state.startup_error = None
    for error_type in (APIError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(error_type, _error_response)
    app.add_middleware(BodyLimit, max_bytes=config.max_request_bytes)
    app.include_router(_public_routes())
    app.include_router(_api_routes(), dependencies=[Depends(_require_api_key)])
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    state = app.state
    # The worker processes inherit the event channel's address: it must exist before the engine does.
    collector = EventCollector(on_evaluation=state.metrics.on_evaluation, on_step=state.metrics.on_step)
    os.environ[EVENTS_ADDRESS_ENV] = collector.address
    try:
        engine = start_engine(state.setup)
    except Exception as error:
        collector.close()
        state.startup_error = error  # the CLI reports it in one line once uvicorn has given up
        raise
    config, setup = state.config, state.setup
    defaults = early_exit.ExitDefaults(
        enabled=config.early_exit_default and setup.markers is not None,
        threshold=config.threshold if config.threshold is not None else
        (setup.probe.config.default_threshold if setup.probe is not None else 0.85),
        min_thinking_tokens=config.min_thinking_tokens, probe=setup.probe, markers_known=setup.markers is not None)
    state.engine, state.collector = engine, collector
    state.core = GenerationCore(engine, collector, state.metrics, setup, defaults, config.served_model_name)
    try:
        yield
    finally:
        engine.shutdown()
        collector.close()


# -- routes ---------------------------------------------------------------------------------------------------
def _public_routes() -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health(request: Request):
        engine = _running_engine(request.app.state)
        return {"status": "ok", "model": request.app.state.config.served_model_name,
                "requests_running": engine.get_num_unfinished_requests()}

    @router.get("/metrics")
    async def metrics(request: Request):
        return Response(request.app.state.metrics.render() + engine_metrics(), media_type=CONTENT_TYPE_LATEST)

    return router


def _api_routes() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/models")
    async def models(request: Request) -> ModelList:
        state = request.app.state
        return ModelList(data=[ModelCard(id=state.config.served_model_name, root=state.config.model,
                                         max_model_len=state.setup.max_model_len, probexit=state.setup.identity)])

    @router.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        core = _core(request, body)
        return await _respond(request, core, serving_chat.plan_chat(core, body), body, serving_chat)

    @router.post("/rewards")
    async def rewards(body: RewardRequest, request: Request) -> RewardResponse:
        return await serving_rewards.score(request.app.state, body)

    @router.post("/completions")
    async def completions(body: CompletionRequest, request: Request):
        core = _core(request, body)
        return await _respond(request, core, serving_completion.plan_completion(core, body), body, serving_completion)

    return router


def _core(request: Request, body: SamplingRequest) -> GenerationCore:
    state = request.app.state
    if body.model is not None and body.model != state.config.served_model_name:
        raise APIError(404, f"The model `{body.model}` does not exist; this server serves "
                            f"`{state.config.served_model_name}`.", param="model", code="model_not_found")
    _running_engine(state)  # a dead engine fails the request here, before a stream could start with a 200
    if state.core.closed_by is not None:  # shutting down
        raise state.core.closed_by
    return state.core


def _running_engine(state):
    """The engine, or a 503 once its process has died (vLLM does not restart it; the server must be)."""
    if state.engine is None or state.engine.errored:
        raise engine_unavailable()
    return state.engine


async def _respond(request: Request, core: GenerationCore, generation: Generation, body: SamplingRequest, serving):
    """Streams as server-sent events, or answers once the choices are done; either way a client that goes
    away has its engine requests aborted at once."""
    if body.stream:
        # Starlette cancels the streaming task when the client disconnects, which closes the generation.
        return StreamingResponse(sse(serving.stream(core, generation, body.include_usage), core.metrics),
                                 media_type="text/event-stream")
    return await _unless_disconnected(request, serving.complete(core, generation))


async def _unless_disconnected(request: Request, work):
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        watcher.cancel()
        return task.result()
    task.cancel()  # the generation's cleanup aborts its engine requests
    return Response(status_code=499)  # nobody is listening; the status shows in the access log


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


# -- the API key, the body limit and errors ---------------------------------------------------------------
class BodyLimit:
    """A request body over `max_bytes` is a 413, raised from the route's read of the body (so the one error
    mapping renders it): at once when Content-Length announces too much, else as soon as the bytes read
    pass the limit (a chunked body). No route ever holds more than the limit in memory."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # the HTTP server has already refused a Content-Length that is not a number
        announced = int(dict(scope["headers"]).get(b"content-length", b"0"))
        received = 0

        async def limited_receive():
            nonlocal received
            if announced > self.max_bytes:
                raise self._too_large()
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self._too_large()
            return message

        return await self.app(scope, limited_receive, send)

    def _too_large(self) -> StarletteHTTPException:
        return StarletteHTTPException(413, f"the request body is larger than this server's limit of "
                                           f"{self.max_bytes} bytes (--max-request-bytes)")


def _require_api_key(request: Request) -> None:
    expected = request.app.state.config.api_key
    if expected is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest: the time taken must not tell how much of a guessed key was right
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise APIError(401, "Incorrect or missing API key: send it as `Authorization: Bearer <key>`.",
                       code="invalid_api_key")


async def _error_response(request: Request, error: Exception) -> JSONResponse:
    api_error = to_api_error(error)
    if request.url.path in GENERATION_PATHS:
        request.app.state.metrics.request_done("rejected" if api_error.status < 500 else "error")
    return JSONResponse(api_error.body().model_dump(), status_code=api_error.status)
