"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from puyu.serve.schemas import ErrorResponse

# HTTP status -> the `type` OpenAI's API (and vLLM) report with it.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "internal_server_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error a request handler returns to the client.

    Args:
        status: HTTP status.
        message: what went wrong, for the client.
        param: the request field at fault, if one is.
        code: a short machine-readable code (e.g. "model_not_found").
    """

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def error_body(status: int, message: str, *, param: str | None = None, code: str | int | None = None) -> dict:
    """The JSON body of an error response."""
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "internal_server_error"),
            "param": param,
            "code": code if code is not None else status,
        }
    }


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | int | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    extra = dict(headers or {})
    if status in (429, 503):
        extra.setdefault("Retry-After", "1")
    if status == 401:
        extra.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(error_body(status, message, param=param, code=code), status_code=status, headers=extra or None)


class BodyTooLargeError(StarletteHTTPException):
    """A request body past the server's limit (raised while the body is read, so FastAPI passes it on)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than this server's limit of {limit} bytes")
        self.code = "request_too_large"


# What the OpenAPI schema declares for every API route besides its 200.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Invalid request: malformed JSON, a bad field, or a prompt too long for the model"),
        (401, "Missing or invalid API key"),
        (404, "Unknown model"),
        (413, "Request body too large"),
        (429, "Too many requests waiting; retry shortly"),
        (500, "The generation failed"),
        (503, "The model is still loading, or the server is shutting down"),
    )
}


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One line from pydantic's error list, naming the first bad field."""
    errors: list[dict[str, Any]] = list(exc.errors())
    if not errors:
        return "invalid request", None
    first = errors[0]
    # Of a union's alternatives (str | list[parts] …), the deepest location is the one the client meant.
    first = max(errors, key=lambda e: len(e.get("loc", ()))) if first.get("type") != "json_invalid" else first
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error")
        return "request body is not valid JSON" + (f" ({detail})" if detail else ""), None
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    message = str(first.get("msg", "invalid value"))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return (f"{param}: {message}{more}" if param else f"{message}{more}"), param


def install_error_handlers(app: Any) -> None:
    """Route every error the app can raise to an OpenAI-shaped response (validation errors are 400, not 422)."""

    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code)

    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(400, message, param=param, code="invalid_value")

    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Keeps the exception's headers: a 405 carries `Allow`.
        code = getattr(exc, "code", None)
        return error_response(exc.status_code, str(exc.detail), code=code, headers=exc.headers)

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
