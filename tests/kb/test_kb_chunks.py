from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from puyu.kb.chunking import chunk_spans, code_blocks, markdown_blocks

MARKDOWN = (
    "# Install\n\nRun pip.\n\n## GPU\n\nCUDA needs a driver.\n\n"
    "# Serving\n\n```bash\npuyu serve\n\n# not a heading inside a fence\n```\n\nEnd.\n"
)


def test_markdown_headings_carried_and_fences_kept_whole() -> None:
    spans = chunk_spans(MARKDOWN, "markdown", chunk_size=200)
    by_heading = {span.heading: MARKDOWN[span.start : span.end] for span in spans}
    assert by_heading == {
        "Install": "# Install\n\nRun pip.",
        "Install > GPU": "## GPU\n\nCUDA needs a driver.",
        "Serving": "# Serving\n\n```bash\npuyu serve\n\n# not a heading inside a fence\n```\n\nEnd.",
    }


def test_markdown_blocks_never_split_a_fence() -> None:
    blocks = markdown_blocks(MARKDOWN)
    fence = [b for b in blocks if MARKDOWN[b.start : b.end].startswith("```")]
    assert len(fence) == 1 and MARKDOWN[fence[0].start : fence[0].end].endswith("```")


def test_chinese_is_cut_at_sentence_ends() -> None:
    text = "第一句话很长很长。第二句话也很长！第三句话？最后一句"
    spans = chunk_spans(text, "text", chunk_size=16)
    pieces = [text[s.start : s.end] for s in spans]
    assert pieces == ["第一句话很长很长。", "第二句话也很长！第三句话？", "最后一句"]


def test_code_is_cut_by_top_level_definition() -> None:
    code = "import os\n\n\ndef a():\n    return 1\n\n\n@cache\ndef b():\n    pass\n\n\nclass C:\n    x = 1\n"
    pieces = [code[s.start : s.end] for s in code_blocks(code)]
    assert pieces == ["import os", "def a():\n    return 1", "@cache\ndef b():\n    pass", "class C:\n    x = 1"]


def test_too_small_chunk_size_is_refused() -> None:
    with pytest.raises(ValueError):
        chunk_spans("text", "text", chunk_size=2)


@given(
    text=st.text(alphabet=st.sampled_from(list("ab 。.!\n#`中文x")), max_size=400),
    kind=st.sampled_from(["markdown", "text", "code"]),
    size=st.integers(16, 120),
)
def test_spans_slice_back_in_order_within_the_size(text: str, kind: str, size: int) -> None:
    spans = chunk_spans(text, kind, chunk_size=size)
    previous_end = 0
    for span in spans:
        piece = text[span.start : span.end]
        assert piece and piece == piece.strip() and span.start >= previous_end
        assert len(piece) <= size
        previous_end = span.end
    # Nothing but whitespace is lost between chunks.
    covered = "".join(text[s.start : s.end] for s in spans)
    assert "".join(covered.split()) == "".join(text.split())
