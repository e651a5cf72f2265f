"""Every error the service returns, in OpenAI's envelope: `{"error": {"message", "type", "param", "code"}}`.

The handlers registered here are the API's one error boundary (`create_app` installs them): validation
errors become 400 with the field and the problem in words, `RequestError` 400, `QueueFullError` 429 with
`Retry-After`, unknown paths 404, and an unexpected exception a 500 whose details stay in the server log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sobesednik.api.schemas import ErrorResponse
from sobesednik.inference.batcher import QueueFullError
from sobesednik.inference.generator import RequestError

logger = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's status for a client that left before the reply: counted apart from server errors
RETRY_AFTER_S = 1  # seconds a client should wait after 429 / 503: a batch of 40 tokens takes about that long

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 408: "timeout", 413: "invalid_request_error", 429: "rate_limit_error",
          499: "client_closed_request", 503: "service_unavailable", 504: "timeout"}


class APIError(Exception):
    """An error with its HTTP status, raised by routes and dependencies and rendered as the envelope."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    detail = {"message": message, "type": _TYPES.get(status, "server_error"), "param": param, "code": code}
    return ErrorResponse.model_validate({"error": detail}).model_dump()


def _response(error: APIError) -> JSONResponse:
    body = error_body(error.status, error.message, param=error.param, code=error.code)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def _describe(problem: dict[str, Any]) -> tuple[str, str]:
    """`("messages.0.role", "messages.0.role: Input should be 'user' or 'assistant' (given: 'tool')")`."""
    location = [str(part) for part in problem["loc"] if part != "body"]
    field = ".".join(location) or "body"
    given = problem.get("input")
    shown = repr(given) if not isinstance(given, dict | list) else type(given).__name__
    if len(shown) > 80:
        shown = shown[:77] + "..."
    message = problem["msg"] if problem["type"] != "missing" else "this field is required"
    return field, f"{field}: {message} (given: {shown})" if problem["type"] != "missing" else f"{field}: {message}"


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    described = [_describe(problem) for problem in error.errors()]
    message = "invalid request: " + "; ".join(text for _, text in described[:5])
    return _response(APIError(400, message, param=described[0][0] if described else None))


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    message = {404: "no such endpoint: see /docs for the API", 405: "method not allowed on this endpoint"}
    return _response(APIError(error.status_code, message.get(error.status_code, str(error.detail)),
                              headers=getattr(error, "headers", None)))


def as_api_error(error: Exception) -> APIError:
    """The one mapping of an exception to what the client sees, for plain responses and streams alike."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, RequestError):
        return APIError(400, str(error))
    if isinstance(error, QueueFullError):
        return APIError(429, str(error), headers={"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(error, TimeoutError):  # a stream's deadline; a plain request raises its own 504
        return APIError(504, "generation took longer than the request timeout: try a smaller max_tokens or n, "
                             "or retry when the server is less busy")
    logger.error("unexpected error", exc_info=error)
    return APIError(500, "internal error in the generation service; the server log has the details")


async def _mapped(_: Request, error: Exception) -> JSONResponse:
    return _response(as_api_error(error))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error_type in (APIError, RequestError, QueueFullError, Exception):
        app.add_exception_handler(error_type, _mapped)


# Documented on every /v1 operation, so the OpenAPI schema describes what the service really answers.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {400: "invalid request", 401: "missing or wrong API key",
                                404: "no such model (persona): the message lists those served",
                                429: "queue full; retry after Retry-After seconds",
                                503: "model still loading", 504: "generation timed out"}.items()
}
