"""`puyu web --api URL`: the page alone, with `/v1/…` forwarded to any OpenAI-compatible endpoint.

The browser only talks to this origin (no CORS on the endpoint needed) and, given `--api-key`, the key stays
on this side: the page sends none and this process adds it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from puyu.errors import PuyuError
from puyu.serve.errors import error_response, install_error_handlers
from puyu.web.mount import mount_web

# Request headers worth passing on; hop-by-hop ones, cookies and the browser's host stay here.
_FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "authorization")
_FORWARDED_RESPONSE_HEADERS = ("content-type", "cache-control", "retry-after")


def api_root(url: str) -> str:
    """The endpoint's root without a trailing `/v1` (`http://h:8000/v1/` → `http://h:8000`)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PuyuError(f"--api must be an http(s) URL such as http://127.0.0.1:8000/v1, got {url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return f"{parts.scheme}://{parts.netloc}{path}"


def create_proxy_app(api_url: str, api_key: str | None = None, timeout: float = 600.0) -> FastAPI:
    """The web app in front of an OpenAI-compatible endpoint.

    Args:
        api_url: the endpoint, with or without its `/v1` (e.g. `http://127.0.0.1:8000/v1`).
        api_key: sent upstream as `Authorization: Bearer KEY` on every request (the browser's own header,
            if any, is then replaced).
        timeout: seconds to wait for the endpoint between bytes.
    """
    root = api_root(api_url)
    client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = FastAPI(title="puyu web", lifespan=lifespan)
    install_error_handlers(app)
    mount_web(app)

    @app.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def forward(path: str, request: Request) -> Response:
        headers = {name: request.headers[name] for name in _FORWARDED_REQUEST_HEADERS if name in request.headers}
        if api_key is not None:
            headers["authorization"] = f"Bearer {api_key}"
        upstream = client.build_request(
            request.method,
            f"{root}/v1/{path}",
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
        try:
            response = await client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            return error_response(502, f"cannot reach the API at {root}: {exc}", code="upstream_unreachable")
        kept = {name: response.headers[name] for name in _FORWARDED_RESPONSE_HEADERS if name in response.headers}
        return StreamingResponse(_relay(response), status_code=response.status_code, headers=kept)

    return app


async def _relay(response: Any) -> AsyncIterator[bytes]:
    """The upstream body as it arrives; closing it (the browser left, or stop) closes the upstream request."""
    try:
        async for piece in response.aiter_raw():
            yield piece
    finally:
        await response.aclose()
