"""Hostile corpus layouts: pages nested thousands of levels deep, symbolic-link loops and links to folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from puyu.data.document import Tally
from puyu.data.readers import expand_inputs, html_text


@pytest.mark.parametrize("depth", [10, 300, 3000, 20000])
def test_deeply_nested_html_keeps_its_text(depth: int) -> None:
    page = (
        "<html><head><title>Deep</title></head><body><p>First paragraph of the page.</p><script>x()</script>"
        + "<div>" * depth
        + "<p>The innermost paragraph.</p>"
        + "</div>" * depth
        + "<p>Last paragraph of the page.</p></body></html>"
    )
    text, title = html_text(page)
    assert text.splitlines() == [
        "First paragraph of the page.",
        "The innermost paragraph.",
        "Last paragraph of the page.",
    ]
    assert title == "Deep"


def test_symbolic_links_are_counted_not_silently_skipped(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("a")
    (corpus / "sub" / "b.txt").write_text("b")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "c.txt").write_text("c")
    os.symlink(outside, corpus / "linked")  # a folder link
    os.symlink(corpus, corpus / "sub" / "loop")  # a loop
    os.symlink(outside / "c.txt", corpus / "alias.txt")  # a file link: read
    os.symlink(corpus / "missing.txt", corpus / "dangling.txt")
    os.symlink(corpus / "self.txt", corpus / "self.txt")  # loops on itself
    tally = Tally()
    files = expand_inputs([str(corpus)], tally)
    assert [path.relative_to(corpus).as_posix() for path in files] == ["a.txt", "alias.txt", "sub/b.txt"]
    problems = {Path(p.source).relative_to(corpus).as_posix(): p.message for p in tally.problems}
    assert problems == {
        "linked": "symbolic link to a folder, not followed",
        "sub/loop": "symbolic link to a folder, not followed",
        "dangling.txt": "broken or looping symbolic link",
        "self.txt": "broken or looping symbolic link",
    }
