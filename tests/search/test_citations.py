"""Citation renumbering: node numbers → global numbers → the final answer's 1..k, streamed or whole."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from puyu.search.backends.base import SearchResult
from puyu.search.citations import Citations, MarkerStream, renumber

PAGE = [SearchResult(title=f"p{i}", url=f"https://x.example/{i}") for i in range(5)]
CHUNK = SearchResult(title="doc", source="kb/a.md", start=10, end=90, text="t")


def test_same_source_gets_one_number_across_nodes() -> None:
    citations = Citations()
    first = MarkerStream(citations.local([PAGE[0], PAGE[1]]))
    second = MarkerStream(citations.local([PAGE[2], PAGE[0], CHUNK]))
    assert first.feed("a [[2]] b [[1]]") + first.flush() == "a [[1]] b [[2]]"
    assert second.feed("c [[2]][[3]] d [[1]] e [[4]]") + second.flush() == "c [[2]][[3]] d [[4]] e "
    assert [s.key for s in citations.sources] == [PAGE[1].key, PAGE[0].key, CHUNK.key, PAGE[2].key]


def test_final_answer_is_renumbered_in_order_of_citation() -> None:
    citations = Citations()
    for page in PAGE:
        citations.number(page)
    final = citations.final()
    text = final.feed("x [[4]] y [[2]][[4]] z [[ 5 ]] w [[0]] [[6]]") + final.flush()
    assert text == "x [[1]] y [[2]][[1]] z [[3]] w  "
    refs = final.references()
    assert [(r.n, r.url) for r in refs] == [(1, PAGE[3].url), (2, PAGE[1].url), (3, PAGE[4].url)]


def test_kb_references_carry_source_and_span() -> None:
    citations = Citations()
    citations.number(CHUNK)
    final = citations.final()
    final.feed("see [[1]]")
    (ref,) = final.references()
    assert (ref.url, ref.source, ref.start, ref.end) == (None, "kb/a.md", 10, 90)


TEXT = st.lists(
    st.sampled_from(["[[1]]", "[[2]]", "[[12]]", "[", "]", "[[", "]]", "a", " ", "[[3", "x[["]), max_size=30
)


@settings(max_examples=200, deadline=None)
@given(TEXT.map("".join), st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_streamed_renumbering_equals_whole(text: str, cuts: list[int]) -> None:
    def mapping(n: int) -> int | None:
        return n + 10 if n < 3 else None

    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    stream = MarkerStream(mapping)
    pieces = [stream.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    assert "".join(pieces) + stream.flush() == renumber(text, mapping)
