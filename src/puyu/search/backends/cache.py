"""An on-disk cache in front of any backend: the same query (or page) is fetched once.

One JSON file per entry, named by a hash of (backend name, kind, key), written atomically; a corrupt or
unreadable entry is a miss. Entries older than `ttl` seconds are misses too (web results go stale).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from puyu.io import atomic_write_text
from puyu.search.backends.base import SearchBackend, SearchResult


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "puyu" / "search"


class CachedBackend:
    """`backend` with its searches and reads kept under `folder`.

    Args:
        backend: the backend to cache.
        folder: where entries go (created on first write).
        ttl: seconds an entry stays fresh (None: forever).
    """

    def __init__(self, backend: SearchBackend, folder: str | os.PathLike[str], ttl: float | None = 7 * 86400) -> None:
        self.backend = backend
        self.name = backend.name
        self.folder = Path(folder)
        self.ttl = ttl
        self.hits = 0
        self.misses = 0

    def _path(self, kind: str, key: str) -> Path:
        digest = hashlib.sha256(json.dumps([self.name, kind, key]).encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.json"

    def _get(self, kind: str, key: str) -> Any:
        path = self._path(kind, key)
        try:
            if self.ttl is not None and time.time() - path.stat().st_mtime > self.ttl:
                return None
            return json.loads(path.read_text(encoding="utf-8"))["value"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _put(self, kind: str, key: str, value: Any) -> None:
        path = self._path(kind, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps({"key": key, "value": value}, ensure_ascii=False))
        except OSError:
            pass  # a cache that cannot be written only costs a refetch

    async def search(self, query: str, k: int) -> list[SearchResult]:
        cached = self._get("search", f"{k}\n{query}")
        if isinstance(cached, list):
            self.hits += 1
            return [SearchResult.from_dict(item) for item in cached if isinstance(item, dict)]
        self.misses += 1
        results = await self.backend.search(query, k)
        self._put("search", f"{k}\n{query}", [r.to_dict() for r in results])
        return results

    async def read(self, result: SearchResult) -> str:
        cached = self._get("read", result.key)
        if isinstance(cached, str):
            self.hits += 1
            return cached
        self.misses += 1
        text = await self.backend.read(result)
        self._put("read", result.key, text)
        return text
