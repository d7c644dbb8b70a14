"""Backends: SearXNG's JSON API against a local fake SearXNG, page reading, the disk cache, failures and
timeouts as `BackendError`, DuckDuckGo through a stand-in `ddgs`, Brave/Bing reply shapes, and `local:KB`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from puyu.errors import PuyuError
from puyu.search.backends import (
    BackendError,
    CachedBackend,
    KBChunk,
    LocalBackend,
    SearchResult,
    open_backend,
    register_kb_opener,
)
from puyu.search.backends.local import _OPENERS, FolderKB
from puyu.search.backends.web import BraveBackend, DuckDuckGoBackend, SearXNGBackend

PAGE = """<html><head><title>Lyon</title><script>var tracking = "NOT TEXT";</script><style>p{}</style></head>
<body><nav>Home | About</nav><article><h1>Lyon</h1><p>Lyon lies where the Rhone meets the Saone.</p>
<p>It is the third-largest city of France.</p></article></body></html>"""


class FakeSearx(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def reply(self, status: int, body: str, kind: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client gave up (the timeout test)
            self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        FakeSearx.hits.append(self.path)
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if url.path == "/search":
            q = query.get("q", [""])[0]
            if query.get("format") != ["json"]:
                return self.reply(403, "Forbidden", "text/html")
            if q == "broken":
                return self.reply(500, "oops", "text/plain")
            if q == "garbage":
                return self.reply(200, "<html>not json</html>", "text/html")
            if q == "slow":
                time.sleep(2)
            results = [
                {"title": "Lyon - Wikipedia", "url": f"{base}/page/lyon", "content": "Lyon lies..."},
                {"title": "No url"},
                {"title": "FTP", "url": "ftp://x.example/file"},
                {"title": "Binary", "url": f"{base}/page/binary", "content": ""},
            ]
            return self.reply(200, json.dumps({"query": q, "results": results}), "application/json")
        if url.path == "/page/lyon":
            return self.reply(200, PAGE, "text/html; charset=utf-8")
        if url.path == "/page/binary":
            return self.reply(200, "\x00\x01", "application/octet-stream")
        if url.path == "/brave":
            assert self.headers["X-Subscription-Token"] == "k"
            web = {"results": [{"title": "B", "url": f"{base}/page/lyon", "description": "d"}]}
            return self.reply(200, json.dumps({"web": web}), "application/json")
        self.reply(404, "missing", "text/plain")


@pytest.fixture(scope="module")
def searx() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSearx)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_searxng_results_and_readable_pages(searx: str) -> None:
    async def go() -> tuple[list[SearchResult], str]:
        backend = SearXNGBackend(searx)
        results = await backend.search("lyon", 5)
        text = await backend.read(results[0])
        with pytest.raises(BackendError, match="cannot read application/octet-stream"):
            await backend.read(results[1])
        await backend.aclose()
        return results, text

    results, text = run(go())
    assert [r.url for r in results] == [f"{searx}/page/lyon", f"{searx}/page/binary"]  # no url / ftp dropped
    assert results[0].title == "Lyon - Wikipedia" and results[0].snippet == "Lyon lies..."
    assert "where the Rhone meets the Saone" in text and "NOT TEXT" not in text
    assert FakeSearx.hits[0].startswith("/search?q=lyon&format=json")


@pytest.mark.parametrize(("query", "message"), [("broken", "HTTP 500"), ("garbage", "not JSON"), ("slow", "searxng")])
def test_searxng_failures_are_backend_errors(searx: str, query: str, message: str) -> None:
    async def go() -> None:
        backend = SearXNGBackend(searx, timeout=0.5)
        try:
            await backend.search(query, 5)
        finally:
            await backend.aclose()

    with pytest.raises(BackendError, match=message):
        run(go())


def test_unreachable_engine_is_a_backend_error() -> None:
    from server_support import free_port

    async def go() -> None:
        await SearXNGBackend(f"http://127.0.0.1:{free_port()}", timeout=2).search("x", 3)

    with pytest.raises(BackendError):
        run(go())


def test_cache_serves_repeats_from_disk(searx: str, tmp_path: Path) -> None:
    async def go() -> None:
        cached = CachedBackend(SearXNGBackend(searx), tmp_path)
        first = await cached.search("cached query", 5)
        before = len(FakeSearx.hits)
        again = CachedBackend(SearXNGBackend(searx), tmp_path)  # a new process, the same folder
        assert [r.to_dict() for r in await again.search("cached query", 5)] == [r.to_dict() for r in first]
        assert await again.read(first[0]) == await cached.read(first[0])
        assert len(FakeSearx.hits) == before + 1  # the page once; the search not again
        for entry in tmp_path.rglob("*.json"):
            entry.write_text("{corrupt")
        await again.search("cached query", 5)  # a corrupt entry is a miss, not a crash
        assert len(FakeSearx.hits) == before + 2
        expired = CachedBackend(SearXNGBackend(searx), tmp_path, ttl=0)
        await asyncio.sleep(0.01)
        await expired.search("cached query", 5)
        assert len(FakeSearx.hits) == before + 3

    run(go())


def test_duckduckgo_through_ddgs(monkeypatch: pytest.MonkeyPatch) -> None:
    ddgs = pytest.importorskip("ddgs")
    seen: dict[str, object] = {}

    class FakeDDGS:
        def __init__(self, timeout: int = 5) -> None:
            seen["timeout"] = timeout

        def text(self, query: str, max_results: int = 10) -> list[dict]:
            if query == "ratelimited":
                raise RuntimeError("202 Ratelimit")
            seen["query"], seen["max"] = query, max_results
            return [{"title": "T", "href": "https://a.example/", "body": "snippet"}, {"title": "bad"}]

    monkeypatch.setattr(ddgs, "DDGS", FakeDDGS)
    backend = DuckDuckGoBackend(timeout=7)
    results = run(backend.search("lyon", 4))
    assert [(r.title, r.url, r.snippet) for r in results] == [("T", "https://a.example/", "snippet")]
    assert seen == {"timeout": 7, "query": "lyon", "max": 4}
    with pytest.raises(BackendError, match="Ratelimit"):
        run(backend.search("ratelimited", 4))


def test_keyed_backends(searx: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRAVE_API_KEY", "BING_API_KEY", "WEB_SEARCH_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(PuyuError, match="BRAVE_API_KEY"):
        open_backend("brave")
    with pytest.raises(PuyuError, match="BING_API_KEY"):
        open_backend("bing")
    brave = BraveBackend(api_key="k")
    brave.endpoint = f"{searx}/brave"
    (result,) = run(brave.search("lyon", 3))
    assert (result.title, result.snippet) == ("B", "d")


def test_backend_specs(tmp_path: Path) -> None:
    with pytest.raises(PuyuError, match="unknown search backend"):
        open_backend("google")
    with pytest.raises(PuyuError, match="searxng:URL"):
        open_backend("searxng:")
    with pytest.raises(PuyuError, match="not an http"):
        open_backend("searxng:file:///etc")
    with pytest.raises(PuyuError, match="not a knowledge base"):
        open_backend(f"local:{tmp_path / 'missing'}")
    assert isinstance(open_backend("searxng:http://127.0.0.1:1", cache_dir=tmp_path), CachedBackend)


def test_folder_kb_results_carry_their_spans(tmp_path: Path) -> None:
    pytest.importorskip("bm25s")
    (tmp_path / "a.md").write_text("# Alice\n\nAlice Smith was born in Lyon.\n\nShe studied physics.\n")
    (tmp_path / "b.txt").write_text("Lyon lies on the Rhone.\n\nParis lies on the Seine.\n")
    backend = open_backend(f"local:{tmp_path}")
    results = run(backend.search("Where was Alice Smith born", 2))
    assert results and results[0].source == str(tmp_path / "a.md")
    for result in results:
        document = Path(result.source or "").read_text()
        assert document[result.start : result.end] == result.text
        assert run(backend.read(result)) == result.text
    assert run(backend.search("zzzz qqqq", 3)) == []


def test_registered_kb_opener_and_kb_errors() -> None:
    class Fake:
        def retrieve(self, query: str, k: int) -> list[KBChunk]:
            if query == "fail":
                raise PuyuError("index missing")
            return [KBChunk(source="docs/x.md", start=5, end=9, text="text")] * 3

    register_kb_opener(lambda path: Fake() if path == "fake-kb" else None)
    try:
        backend = open_backend("local:fake-kb")
        assert isinstance(backend, LocalBackend)
        results = run(backend.search("q", 2))
        assert len(results) == 2 and results[0].key == "kb:docs/x.md:5:9" and results[0].url is None
        with pytest.raises(BackendError, match="index missing"):
            run(backend.search("fail", 2))
    finally:
        _OPENERS.clear()


def test_folder_kb_needs_documents(tmp_path: Path) -> None:
    pytest.importorskip("bm25s")
    with pytest.raises(PuyuError, match=r"no \.txt or \.md"):
        FolderKB(tmp_path)
