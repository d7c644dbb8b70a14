"""Search backends and `open_backend(spec)`: 'local:KB', 'searxng:URL', 'duckduckgo', 'brave', 'bing'."""

from __future__ import annotations

import os

from puyu.errors import PuyuError
from puyu.search.backends.base import BackendError, SearchBackend, SearchResult
from puyu.search.backends.cache import CachedBackend, default_cache_dir
from puyu.search.backends.local import KBChunk, KnowledgeBase, LocalBackend, open_knowledge_base, register_kb_opener

__all__ = [
    "BackendError",
    "CachedBackend",
    "KBChunk",
    "KnowledgeBase",
    "LocalBackend",
    "SearchBackend",
    "SearchResult",
    "open_backend",
    "register_kb_opener",
]


def open_backend(spec: str, *, cache_dir: str | os.PathLike[str] | None = None, timeout: float = 15.0) -> SearchBackend:
    """The backend named by `spec`, its web searches cached on disk.

    Args:
        spec: 'local:KB' (a knowledge base path), 'searxng:URL', 'duckduckgo', 'brave' or 'bing' (keys from env).
        cache_dir: where web results are cached (default ~/.cache/puyu/search); local backends are not cached.
        timeout: seconds per HTTP request of web backends.
    """
    from puyu.search.backends import web

    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "local":
        if not rest:
            raise PuyuError("local:KB needs a knowledge base path, e.g. local:kb/docs")
        return LocalBackend(open_knowledge_base(rest), name=f"local:{rest}")
    backend: SearchBackend
    if kind == "searxng":
        if not rest:
            raise PuyuError("searxng:URL needs the instance URL, e.g. searxng:http://127.0.0.1:8080")
        backend = web.SearXNGBackend(rest, timeout)
    elif kind in ("duckduckgo", "ddg"):
        backend = web.DuckDuckGoBackend(timeout)
    elif kind == "brave":
        backend = web.BraveBackend(rest or None, timeout)
    elif kind == "bing":
        backend = web.BingBackend(rest or None, timeout)
    else:
        raise PuyuError(f"unknown search backend {spec!r} (local:KB, searxng:URL, duckduckgo, brave, bing)")
    return CachedBackend(backend, cache_dir if cache_dir is not None else default_cache_dir())
