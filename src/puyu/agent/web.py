"""Web search backends (SearXNG JSON API, DuckDuckGo via `ddgs`, Bing, Brave) and a readable-page fetcher.

The backend comes from `PUYU_SEARCH`: `searxng:URL` (default when `PUYU_SEARXNG_URL` is set), `ddgs`, `bing`
(key in `BING_API_KEY`) or `brave` (key in `BRAVE_API_KEY`); `set_web_search_backend` overrides it in code.
"""

from __future__ import annotations

import html
import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlparse

import httpx

from puyu.errors import PuyuError

TIMEOUT = 15.0
MAX_PAGE_BYTES = 2 * 1024 * 1024
MAX_PAGE_CHARS = 12_000


class SearchBackend(Protocol):
    def search(self, query: str, max_results: int) -> list[dict]: ...


def _result(title: object, url: object, snippet: object) -> dict:
    return {"title": str(title or ""), "url": str(url or ""), "snippet": str(snippet or "")}


@dataclass
class SearxngSearch:
    """A SearXNG instance's JSON API (`/search?format=json`; the instance must enable the json format)."""

    base_url: str

    def search(self, query: str, max_results: int) -> list[dict]:
        response = httpx.get(
            f"{self.base_url.rstrip('/')}/search", params={"q": query, "format": "json"}, timeout=TIMEOUT
        )
        response.raise_for_status()
        items = response.json().get("results", [])
        return [_result(i.get("title"), i.get("url"), i.get("content")) for i in items[:max_results]]


class DuckDuckGoSearch:
    """DuckDuckGo through the `ddgs` package (no key)."""

    def search(self, query: str, max_results: int) -> list[dict]:
        try:
            from ddgs import DDGS
        except ImportError as exc:
            raise PuyuError("the ddgs search backend needs `pip install ddgs`") from exc
        items = DDGS().text(query, max_results=max_results) or []
        return [_result(i.get("title"), i.get("href"), i.get("body")) for i in items]


@dataclass
class BingSearch:
    api_key: str
    endpoint: str = "https://api.bing.microsoft.com/v7.0/search"

    def search(self, query: str, max_results: int) -> list[dict]:
        headers = {"Ocp-Apim-Subscription-Key": self.api_key}
        response = httpx.get(self.endpoint, params={"q": query, "count": max_results}, headers=headers, timeout=TIMEOUT)
        response.raise_for_status()
        items = response.json().get("webPages", {}).get("value", [])
        return [_result(i.get("name"), i.get("url"), i.get("snippet")) for i in items[:max_results]]


@dataclass
class BraveSearch:
    api_key: str
    endpoint: str = "https://api.search.brave.com/res/v1/web/search"

    def search(self, query: str, max_results: int) -> list[dict]:
        headers = {"X-Subscription-Token": self.api_key, "Accept": "application/json"}
        response = httpx.get(self.endpoint, params={"q": query, "count": max_results}, headers=headers, timeout=TIMEOUT)
        response.raise_for_status()
        items = response.json().get("web", {}).get("results", [])
        return [_result(i.get("title"), i.get("url"), i.get("description")) for i in items[:max_results]]


_override: SearchBackend | None = None


def set_web_search_backend(backend: SearchBackend | None) -> None:
    """Use `backend` for the `web_search` tool in this process (None: back to the environment's choice)."""
    global _override
    _override = backend


def web_search_backend() -> SearchBackend:
    """The configured search backend (see the module docstring)."""
    if _override is not None:
        return _override
    choice = os.environ.get("PUYU_SEARCH", "")
    if not choice and os.environ.get("PUYU_SEARXNG_URL"):
        choice = "searxng:" + os.environ["PUYU_SEARXNG_URL"]
    kind, _, argument = (choice or "ddgs").partition(":")
    if kind == "searxng":
        if not argument:
            raise PuyuError("PUYU_SEARCH=searxng needs a URL: searxng:http://host:port")
        return SearxngSearch(argument if "//" in argument else f"http:{argument}")
    if kind == "ddgs":
        return DuckDuckGoSearch()
    for name, backend, variable in (("bing", BingSearch, "BING_API_KEY"), ("brave", BraveSearch, "BRAVE_API_KEY")):
        if kind == name:
            key = os.environ.get(variable)
            if not key:
                raise PuyuError(f"the {name} search backend needs {variable}")
            return backend(key)
    raise PuyuError(f"unknown search backend {kind!r}; expected searxng:URL, ddgs, bing or brave")


def _check_public(url: str) -> None:
    """Refuse non-http(s) URLs and hosts on loopback/private networks (a model must not probe the local network)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"only http(s) URLs can be fetched: {url!r}")
    if os.environ.get("PUYU_FETCH_ALLOW_PRIVATE") == "1":
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parsed.hostname, None)}
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {parsed.hostname}: {exc}") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            raise ValueError(f"{parsed.hostname} resolves to a non-public address")


def _plain_text(page: str) -> str:
    page = re.sub(r"(?is)<(script|style|noscript)\b.*?</\1>", " ", page)
    page = re.sub(r"(?s)<[^>]+>", " ", page)
    return re.sub(r"\s+", " ", html.unescape(page)).strip()


def fetch_readable(url: str) -> str:
    """The readable text of a public web page (trafilatura when installed, else tags stripped), truncated."""
    _check_public(url)
    with httpx.stream("GET", url, timeout=TIMEOUT, follow_redirects=False) as response:
        response.raise_for_status()
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_PAGE_BYTES:
                break
    page = body.decode(response.encoding or "utf-8", errors="replace")
    text = None
    try:
        import trafilatura

        text = trafilatura.extract(page)
    except ImportError:
        pass
    text = text or _plain_text(page)
    return text[:MAX_PAGE_CHARS]
