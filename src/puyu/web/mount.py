"""Serving the static page: `/` is the page, `/web/…` its modules, styles and vendored libraries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"

# The page renders model output; a strict policy is the second wall behind DOMPurify: no inline or remote
# script, no remote images (a rendered `<img>` cannot call home), requests only to this origin. Inline
# style attributes stay allowed because KaTeX sizes its glyphs with them.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def mount_web(app: Any) -> None:
    """Serve the web app from `app`: the page at `/`, its files under `/web/`.

    Args:
        app: a FastAPI app. The page calls `/v1/…` on the same origin, so `app` (or a proxy) must serve them.
    """

    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=SECURITY_HEADERS)

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.mount("/web", StaticFiles(directory=STATIC_DIR), name="web")
