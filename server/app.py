"""The FastAPI application: `build_app(config)`, thin routers, one error mapping, the API-key check, and
the lifespan that starts and stops the engine and the early-exit event channel.

Nothing here is global: the engine, the probe, the reward model, the metrics and the generation core
live on `app.state`, so that several apps (tests) can exist in one process.
"""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from probexit.engine.client import engine_metrics, start_engine
from probexit.engine.events import EventCollector
from probexit.engine.setup import prepare
from probexit.probes.rules import DEFAULT_THRESHOLD
from probexit.server import early_exit
from probexit.server.config import ServerConfig
from probexit.server.errors import APIError, engine_unavailable, to_api_error
from probexit.server.generation import GenerationCore
from probexit.server.metrics import ServerMetrics
from probexit.server.protocol import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList
from probexit.server.protocol_responses import ResponsesRequest
from probexit.server.protocol_rewards import RewardRequest, RewardResponse
from probexit.server.serving_chat import ServingChat
from probexit.server.serving_completion import ServingCompletion
from probexit.server.serving_responses import ServingResponses
from probexit.server.serving_rewards import ServingRewards

GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/responses")


def build_app(config: ServerConfig) -> FastAPI:
    """Checks everything that can fail on the user's input (raising ConfigError) and returns the app;
    the engine itself starts in the lifespan, before the server accepts connections."""
    setup = prepare(config.engine_config())
    app = FastAPI(title="probexit", version="0.1.0", lifespan=_lifespan, docs_url=None, redoc_url=None)
    app.state.config, app.state.setup, app.state.probe = config, setup, setup.probe
    app.state.rewards = ServingRewards.load(config)
    app.state.metrics = ServerMetrics(config.served_model_name)
    app.state.engine = app.state.collector = app.state.core = None
    app.state.chat = app.state.completion = app.state.responses = None
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
    # The workers find the event channel through the environment (inherited by local processes, copied by vLLM's
    # Ray executors): it must exist before the engine does.
    metrics, collector = state.metrics, None
    try:
        collector = EventCollector(
            metrics.on_evaluation, metrics.on_step, bind=state.config.events_bind, on_rejected=metrics.channel_rejected
        )
        collector.export_to_workers()
        engine = start_engine(state.setup)
    except Exception as error:
        if collector is not None:
            collector.close()
        state.startup_error = error  # the CLI reports it in one line once uvicorn has given up
        raise
    config, setup = state.config, state.setup
    probe_threshold = setup.probe.config.default_threshold if setup.probe is not None else DEFAULT_THRESHOLD
    defaults = early_exit.ExitDefaults(
        enabled=config.early_exit_default and setup.markers is not None,
        settings=config.exit_settings(probe_threshold),
        probe=setup.probe,
        markers_known=setup.markers is not None,
        shadow_rate=config.shadow_rate,
    )
    state.engine, state.collector = engine, collector
    state.core = GenerationCore(engine, collector, state.metrics, setup, defaults, config.served_model_name)
    state.chat, state.completion = ServingChat(state.core), ServingCompletion(state.core)
    state.responses = ServingResponses(state.core)
    try:
        yield
    finally:
        engine.shutdown()
        collector.close()


# -- routes: one line each --------------------------------------------------------------------------------------
def _public_routes() -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health(request: Request):
        return _health(request.app.state)

    @router.get("/metrics")
    async def metrics(request: Request):
        return Response(request.app.state.metrics.render() + engine_metrics(), media_type=CONTENT_TYPE_LATEST)

    return router


def _api_routes() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/models")
    async def models(request: Request) -> ModelList:
        return _models(request.app.state)

    @router.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        return await request.app.state.chat.handle(body, request)

    @router.post("/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await request.app.state.completion.handle(body, request)

    @router.post("/responses")
    async def responses(body: ResponsesRequest, request: Request):
        return await request.app.state.responses.handle(body, request)

    @router.post("/rewards")
    async def rewards(body: RewardRequest, request: Request) -> RewardResponse:
        return await request.app.state.rewards.handle(body)

    return router


def _health(state) -> dict:
    """The engine's state, or a 503 once its process has died (vLLM does not restart it; the server must be)."""
    if state.engine is None or state.engine.errored:
        raise engine_unavailable()
    return {
        "status": "ok",
        "model": state.config.served_model_name,
        "requests_running": state.engine.get_num_unfinished_requests(),
    }


def _models(state) -> ModelList:
    return ModelList(
        data=[
            ModelCard(
                id=state.config.served_model_name,
                root=state.config.model,
                max_model_len=state.setup.max_model_len,
                probexit=state.setup.identity,
            )
        ]
    )


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
        return StarletteHTTPException(
            413, f"the request body is larger than this server's limit of {self.max_bytes} bytes (--max-request-bytes)"
        )


def _require_api_key(request: Request) -> None:
    expected = request.app.state.config.api_key
    if expected is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest: the time taken must not tell how much of a guessed key was right
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise APIError(
            401, "Incorrect or missing API key: send it as `Authorization: Bearer <key>`.", code="invalid_api_key"
        )


async def _error_response(request: Request, error: Exception) -> JSONResponse:
    api_error = to_api_error(error)
    if request.url.path in GENERATION_PATHS:
        request.app.state.metrics.request_done("rejected" if api_error.status < 500 else "error")
    return JSONResponse(api_error.body().model_dump(), status_code=api_error.status)
