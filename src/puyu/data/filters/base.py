"""What a filter is: a named callable that keeps a document (None) or says in one line why it removes it.

A reason reads "<kind>: <measure> <comparison> <threshold>", for example "too short: 12 chars < 85". The
kind before the colon is fixed text, so reports can group removals by it; the rest carries the numbers.
"""

from __future__ import annotations

from typing import Protocol

from puyu.data.document import Document


class Filter(Protocol):
    """A quality rule over one document.

    Attributes:
        name: the rule ("length", "stop_words", ...); reports count removals under it.
    """

    name: str

    def __call__(self, doc: Document) -> str | None:
        """None to keep `doc`; otherwise a short reason for removing it."""
        ...


def above(kind: str, value: float, limit: float, unit: str = "") -> str | None:
    """The reason when `value` exceeds `limit` (equal passes), else None."""
    if value > limit:
        return f"{kind}: {value:.3f}{unit} > {limit:g}"
    return None


def below(kind: str, value: float, limit: float, unit: str = "") -> str | None:
    """The reason when `value` falls short of `limit` (equal passes), else None."""
    if value < limit:
        return f"{kind}: {value:.3f}{unit} < {limit:g}"
    return None
