"""The one mapping from exceptions to OpenAI's error body, used by the app's handlers and by SSE streams
(whose errors arrive after the 200 status has been sent)."""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from probexit.engine.client import engine_error_kind
from probexit.engine.constants import CLIENT_ERROR, ENGINE_DEAD, NOT_FOUND
from probexit.server.protocol import ErrorDetail, ErrorResponse

logger = logging.getLogger("probexit.server")


class APIError(Exception):
    """An error a request gets as OpenAI's error body; raised by serving code, rendered in one place."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code))


def to_api_error(error: BaseException) -> APIError:
    if isinstance(error, APIError):
        return error
    if isinstance(error, RequestValidationError):
        return _validation_error(error)
    if isinstance(error, StarletteHTTPException):
        return _http_error(error)
    kind = engine_error_kind(error)
    if kind == ENGINE_DEAD:  # the engine's process is gone; /health says so too
        return engine_unavailable()
    if kind == NOT_FOUND:
        return APIError(404, str(error), code="not_found")
    if kind == CLIENT_ERROR:
        return APIError(400, str(error))
    logger.error("request failed", exc_info=error)
    return APIError(
        500,
        f"internal server error ({type(error).__name__}); see the server log",
        type="server_error",
        code="internal_error",
    )


def engine_unavailable() -> APIError:
    """The engine's process is gone: vLLM does not restart it, so every request fails at once until the
    server is restarted (`/health` answers 503 for load balancers and orchestrators)."""
    return APIError(
        503, "the engine is not running; the server must be restarted", type="server_error", code="engine_unavailable"
    )


def shutting_down() -> APIError:
    return APIError(
        503, "the server is shutting down; retry on another replica", type="server_error", code="server_shutting_down"
    )


def _http_error(error: StarletteHTTPException) -> APIError:
    """Starlette's and FastAPI's own errors: unknown routes, wrong methods, oversized or unreadable bodies."""
    code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(error.status_code)
    cause = error.__cause__
    if error.status_code == 400 and cause is not None:  # FastAPI could not decode the body (bad UTF-8, nesting)
        detail = " ".join(str(cause).split())[:200]
        return APIError(400, f"the request body is not valid JSON: {type(cause).__name__}: {detail}")
    return APIError(error.status_code, str(error.detail), code=code)


def _validation_error(error: RequestValidationError) -> APIError:
    """Pydantic's first complaint, with the field as a dotted path (`early_exit.threshold`)."""
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return APIError(400, f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}")
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    # Union members add their type to the path (`stop.str`, `tool_choice.NamedToolChoice`, `literal['auto']`); the
    # field the client wrote is what matters.
    location = [part for part in location if not _union_member(part)]
    param = ".".join(location) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    if param is None:  # the body as a whole: missing, or not a JSON object
        message = "the request body is missing" if first.get("type") == "missing" else f"the request body: {message}"
        return APIError(400, f"{message}; send a JSON object with the request's fields")
    return APIError(400, f"{param}: {message}", param=param)


def _union_member(part: str) -> bool:
    """A path part that names a union member's type rather than a field: a builtin type, a generic or literal type,
    or a schema class (fields are lower-case)."""
    return part in ("str", "int", "float", "bool", "dict") or "[" in part or part[:1].isupper()
