"""The middleware in front of every route: API key, request-body limit, and the request counter of `/metrics`.

Pure ASGI, so streaming and disconnects pass through untouched. It sits inside Starlette's error
middleware, so it also turns an unhandled exception into an OpenAI-shaped 500 (instead of a plain-text
one) and counts it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

from puyu.serve.errors import BodyTooLargeError, error_response
from puyu.serve.metrics import ServerMetrics

logger = logging.getLogger("puyu.serve")

# Paths that need the API key besides /v1/*: the schema and its viewers describe the API.
_DOC_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
# Endpoint label values of the request counter (anything else counts as "other": labels stay bounded).
COUNTED_PATHS = {"/v1/models", "/v1/completions", "/v1/chat/completions", "/health", "/metrics"}
# Where a handler records the status a streamed response ended with (a 200 that failed midway).
STREAM_STATUS = "puyu.stream_status"


def needs_key(path: str) -> bool:
    return path.startswith("/v1") or path in _DOC_PATHS


class GuardMiddleware:
    """Checks the API key, limits request bodies to `max_request_bytes` (413) and counts every response.

    Args:
        app: the ASGI app behind it.
        api_key: the key `Authorization: Bearer` must carry, or None for none.
        max_request_bytes: most bytes of a request body, or None for no limit.
        metrics: where responses are counted by endpoint and status.
    """

    def __init__(self, app: Any, *, api_key: str | None, max_request_bytes: int | None, metrics: ServerMetrics) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key is not None else None
        self.max_request_bytes = max_request_bytes
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        endpoint = path if path in COUNTED_PATHS else "other"
        status: list[int] = []  # the status sent, once it is

        async def tracking_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self._guarded(scope, receive, tracking_send, path)
        except Exception:
            if status:
                scope[STREAM_STATUS] = 500
                raise
            logger.exception("unhandled error in %s", path)
            await error_response(500, "internal server error", code="internal_error")(scope, receive, tracking_send)
        finally:
            final = scope.get(STREAM_STATUS) or (status[0] if status else 499)  # 499: client went away first
            self.metrics.requests.labels(endpoint, str(final)).inc()

    async def _guarded(self, scope: dict, receive: Callable, send: Callable, path: str) -> None:
        if self.expected is not None and needs_key(path):
            headers = dict(scope.get("headers") or [])
            given: bytes = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):  # constant time: no key prefix leaks by timing
                message = "missing API key (send 'Authorization: Bearer KEY')" if not given else "invalid API key"
                await error_response(401, message, code="invalid_api_key")(scope, receive, send)
                return
        limit = self.max_request_bytes
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            too_large = BodyTooLargeError(limit)
            await error_response(413, too_large.detail, code=too_large.code)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a chunked body has no Content-Length to check up front
                    raise BodyTooLargeError(limit)
            return message

        await self.app(scope, limited_receive, send)
