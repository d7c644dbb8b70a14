"""Citations: `[[n]]` markers renumbered from each node's own sources to one numbering for the final answer.

Each searcher numbers the sources it was shown 1..m; `Citations` gives every distinct source (a page URL or a
knowledge-base span) one global number, so that two nodes citing the same page cite the same `[[n]]`. The final
answer is renumbered once more, in order of first citation, and only what it cites goes into the reference list.
Markers naming a source the writer was never shown are dropped, never passed on.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from puyu.search.backends.base import SearchResult
from puyu.search.events import Reference

MARKER = re.compile(r"\[\[\s*(\d{1,4})\s*\]\]")
# A tail that may still become a marker once more text arrives: "[", "[[", "[[12", "[[12]".
_OPEN_TAIL = re.compile(r"\[(\[\s*\d{0,4}\s*\]?)?$")


def renumber(text: str, mapping: Callable[[int], int | None]) -> str:
    """`text` with each `[[n]]` replaced by `[[mapping(n)]]`, or removed where the mapping gives None."""

    def replace(match: re.Match[str]) -> str:
        target = mapping(int(match.group(1)))
        return "" if target is None else f"[[{target}]]"

    return MARKER.sub(replace, text)


class Citations:
    """The sources of one search and their global numbers (1-based, in order of first use)."""

    def __init__(self) -> None:
        self.sources: list[SearchResult] = []
        self._number: dict[str, int] = {}

    def number(self, result: SearchResult) -> int:
        key = result.key
        if key not in self._number:
            self.sources.append(result)
            self._number[key] = len(self.sources)
        return self._number[key]

    def local(self, shown: list[SearchResult]) -> Callable[[int], int | None]:
        """The mapping from a node's own numbers (`[[i]]` is `shown[i-1]`) to global numbers."""

        def mapping(local: int) -> int | None:
            return self.number(shown[local - 1]) if 1 <= local <= len(shown) else None

        return mapping

    def final(self) -> FinalCitations:
        return FinalCitations(self)


class MarkerStream:
    """Renumbers markers in streamed text: `feed` returns what is safe to show now (a marker cut between two
    pieces is held back until it is whole); `flush` returns the rest."""

    def __init__(self, mapping: Callable[[int], int | None]) -> None:
        self.mapping = mapping
        self._held = ""

    def feed(self, piece: str) -> str:
        text = self._held + piece
        tail = _OPEN_TAIL.search(text)
        cut = tail.start() if tail else len(text)
        self._held = text[cut:]
        return renumber(text[:cut], self.mapping)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return renumber(text, self.mapping)


async def renumbered_reply(client: Any, messages: list[dict], params: Any, markers: MarkerStream) -> AsyncIterator[str]:
    """The model's streamed reply, its markers renumbered by `markers`, in pieces as they become safe to show."""
    # aclosing: a cancelled caller closes the model stream at once (the request is aborted, not left running).
    async with contextlib.aclosing(client.astream_chat(messages, params)) as deltas:
        async for delta in deltas:
            text = markers.feed(delta.content)
            if text:
                yield text
    rest = markers.flush()
    if rest:
        yield rest


class FinalCitations(MarkerStream):
    """The final answer's renumbering: global numbers become 1..k in order of first appearance;
    `references()` lists what was cited, in the new order."""

    def __init__(self, citations: Citations) -> None:
        super().__init__(self._map)
        self.citations = citations
        self.order: list[int] = []  # global numbers, in order of first appearance

    def _map(self, number: int) -> int | None:
        if not 1 <= number <= len(self.citations.sources):
            return None
        if number not in self.order:
            self.order.append(number)
        return self.order.index(number) + 1

    def references(self) -> list[Reference]:
        refs = []
        for new, old in enumerate(self.order, start=1):
            source = self.citations.sources[old - 1]
            refs.append(
                Reference(
                    n=new, title=source.title, url=source.url, source=source.source, start=source.start, end=source.end
                )
            )
        return refs
