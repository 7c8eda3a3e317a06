"""The one mapping from exceptions to OpenAI's error body, used by the app's handlers and by SSE streams
(whose errors arrive after the 200 status has been sent)."""
from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from probexit.server.protocol import ErrorDetail, ErrorResponse

logger = logging.getLogger("probexit.server")


class APIError(Exception):
    """An error a request gets as OpenAI's error body; raised by serving code, rendered in one place."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
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
        code = "not_found" if error.status_code == 404 else None
        return APIError(error.status_code, str(error.detail), code=code)
    from vllm.exceptions import VLLMClientError, VLLMNotFoundError

    if isinstance(error, VLLMNotFoundError):
        return APIError(404, str(error), code="not_found")
    if isinstance(error, VLLMClientError):
        return APIError(400, str(error))
    logger.error("request failed", exc_info=error)
    return APIError(500, f"internal server error ({type(error).__name__}); see the server log",
                    type="server_error", code="internal_error")


def _validation_error(error: RequestValidationError) -> APIError:
    """Pydantic's first complaint, with the field as a dotted path (`early_exit.threshold`)."""
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return APIError(400, f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}")
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    # Union members add their type to the path (`stop.str`); the field the client wrote is what matters.
    location = [part for part in location if part not in ("str", "int", "list[str]", "list[int]", "list[list[int]]")]
    param = ".".join(location) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "extra_forbidden":
        message = "unknown setting"
    return APIError(400, f"{param}: {message}" if param else message, param=param)
