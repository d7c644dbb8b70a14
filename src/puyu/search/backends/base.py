"""What a search backend is: `search(query, k)` gives results, `read(result)` gives the text behind one.

Web backends return pages (url, title, snippet) and read them over HTTP; the local backend returns knowledge-base
chunks (source, start, end) whose text it already holds. Backends raise `BackendError` for anything that goes
wrong on their side (HTTP status, timeout, malformed reply); the searcher reports it on the node and goes on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from puyu.errors import PuyuError


class BackendError(PuyuError):
    """A search or read that failed (network, status, timeout, bad reply)."""


@dataclass
class SearchResult:
    """One hit: a web page, or a span of a knowledge-base document."""

    title: str
    snippet: str = ""
    url: str | None = None
    source: str | None = None  # knowledge-base document
    start: int | None = None  # character span of the chunk in its document
    end: int | None = None
    text: str | None = None  # the content, where the backend has it already (kb chunks)

    @property
    def key(self) -> str:
        """What makes two hits the same source (for de-duplication and citation numbers)."""
        if self.url:
            return "url:" + self.url.rstrip("/")
        return f"kb:{self.source}:{self.start}:{self.end}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchResult:
        fields = {k: data.get(k) for k in ("title", "snippet", "url", "source", "start", "end", "text")}
        fields["title"] = str(fields["title"] or "")
        fields["snippet"] = str(fields["snippet"] or "")
        return cls(**fields)


@runtime_checkable
class SearchBackend(Protocol):
    """A source of search results. `name` identifies it in caches and reports."""

    name: str

    async def search(self, query: str, k: int) -> list[SearchResult]: ...

    async def read(self, result: SearchResult) -> str: ...
