"""Web search backends: SearXNG (its JSON API), DuckDuckGo (the `ddgs` package), Bing and Brave (API keys).

Each turns the engine's reply into `SearchResult`s and reads pages with `fetch_page`. Engines are untrusted:
a reply that is not the expected JSON is a `BackendError`, never a crash.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx

from puyu.errors import one_line
from puyu.search.backends.base import BackendError, SearchResult
from puyu.search.backends.pages import fetch_page

USER_AGENT = "puyu-search/1.0"


class _HTTPBackend:
    """Shared by the HTTP engines: one httpx client (timeout, user agent), JSON GETs, page reads."""

    name = "web"

    def __init__(self, timeout: float = 15.0) -> None:
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        # Made on first use, inside the running loop.
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, headers={"User-Agent": USER_AGENT})
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def get_json(self, url: str, params: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        try:
            response = await self.client.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise BackendError(f"{self.name}: {one_line(exc)}") from exc
        if response.status_code >= 400:
            raise BackendError(f"{self.name}: HTTP {response.status_code} from {url}")
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(f"{self.name}: the reply is not JSON") from exc

    async def read(self, result: SearchResult) -> str:
        if result.url is None:
            return result.snippet
        return await fetch_page(self.client, result.url)


def _results(items: Any, title: str, url: str, snippet: str, k: int, engine: str) -> list[SearchResult]:
    if not isinstance(items, list):
        raise BackendError(f"{engine}: unexpected reply (no result list)")
    results = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get(url), str) and item[url].startswith(("http://", "https://")):
            results.append(
                SearchResult(
                    title=str(item.get(title) or item[url]), snippet=str(item.get(snippet) or ""), url=item[url]
                )
            )
        if len(results) >= k:
            break
    return results


class SearXNGBackend(_HTTPBackend):
    """A SearXNG instance's JSON API (`/search?q=…&format=json`; the instance must allow the json format).

    Args:
        base_url: the instance, e.g. http://127.0.0.1:8080.
        timeout: seconds per HTTP request.
    """

    def __init__(self, base_url: str, timeout: float = 15.0) -> None:
        super().__init__(timeout)
        if not base_url.startswith(("http://", "https://")):
            raise BackendError(f"searxng: {base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.name = f"searxng:{self.base_url}"

    async def search(self, query: str, k: int) -> list[SearchResult]:
        reply = await self.get_json(f"{self.base_url}/search", {"q": query, "format": "json"})
        items = reply.get("results") if isinstance(reply, dict) else None
        return _results(items, "title", "url", "content", k, "searxng")


class _KeyedBackend(_HTTPBackend):
    """A search API with a key: where its results sit in the reply and what their fields are called."""

    endpoint = ""
    key_env = ""
    key_header = ""
    results_path: tuple[str, ...] = ()
    title_field, snippet_field = "title", "snippet"

    def __init__(self, api_key: str | None = None, timeout: float = 15.0) -> None:
        super().__init__(timeout)
        self.api_key = api_key or os.environ.get(self.key_env) or os.environ.get("WEB_SEARCH_API_KEY")
        if not self.api_key:
            raise BackendError(f"{self.name}: set {self.key_env} (or WEB_SEARCH_API_KEY)")

    async def search(self, query: str, k: int) -> list[SearchResult]:
        reply = await self.get_json(self.endpoint, {"q": query, "count": k}, {self.key_header: self.api_key or ""})
        for key in self.results_path:
            reply = reply.get(key) if isinstance(reply, dict) else None
        return _results(reply, self.title_field, "url", self.snippet_field, k, self.name)


class BraveBackend(_KeyedBackend):
    """Brave Search API (key in `BRAVE_API_KEY` or `WEB_SEARCH_API_KEY`)."""

    name = "brave"
    endpoint = "https://api.search.brave.com/res/v1/web/search"
    key_env, key_header = "BRAVE_API_KEY", "X-Subscription-Token"
    results_path = ("web", "results")
    snippet_field = "description"


class BingBackend(_KeyedBackend):
    """Bing Web Search API v7 (key in `BING_API_KEY` or `WEB_SEARCH_API_KEY`)."""

    name = "bing"
    endpoint = "https://api.bing.microsoft.com/v7.0/search"
    key_env, key_header = "BING_API_KEY", "Ocp-Apim-Subscription-Key"
    results_path = ("webPages", "value")
    title_field = "name"


class DuckDuckGoBackend(_HTTPBackend):
    """DuckDuckGo through the `ddgs` package (`pip install 'puyu[search]'`); its calls run in a thread."""

    name = "duckduckgo"

    def __init__(self, timeout: float = 15.0) -> None:
        super().__init__(timeout)
        try:
            from ddgs import DDGS
        except ImportError:
            raise BackendError("duckduckgo needs the ddgs package: pip install 'puyu[search]'") from None
        self._ddgs = DDGS

    async def search(self, query: str, k: int) -> list[SearchResult]:
        def run() -> Any:
            return self._ddgs(timeout=int(self.timeout)).text(query, max_results=k)

        try:
            items = await asyncio.to_thread(run)
        except Exception as exc:  # ddgs raises its own exception types for rate limits and timeouts
            raise BackendError(f"duckduckgo: {one_line(exc)}") from exc
        return _results(list(items or []), "title", "href", "body", k, "duckduckgo")
