"""`puyu search` against a live scripted server (`--api`) over a folder knowledge base (`local:DIR`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import QUESTION

from puyu.cli import main

pytest.importorskip("bm25s")


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    (tmp_path / "alice.md").write_text("Alice Smith was born in Lyon, France, birthplace of cinema.\n")
    (tmp_path / "lyon.md").write_text("Lyon lies on the Rhone and the Saone rivers.\n")
    return tmp_path


def test_json_result(server: tuple[str, dict], kb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = server
    assert main(["search", QUESTION, "--api", url, "--backend", f"local:{kb}", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"].startswith("Alice was born in Lyon [[1]]")
    assert {n["id"] for n in result["nodes"]} == {"born", "bob", "river"}
    assert all(n["state"] == "done" and n["answer"].startswith("Found:") for n in result["nodes"])
    for ref in result["references"]:
        assert ref["url"] is None and Path(ref["source"]).parent == kb
        assert ref["end"] > ref["start"] >= 0
    assert result["stats"]["nodes"] == 3 and result["stats"]["pages_read"] >= 1 and result["error"] is None


def test_live_view_prints_the_graph_and_references(
    server: tuple[str, dict], kb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = server
    assert main(["search", QUESTION, "--api", url, "--backend", f"local:{kb}"]) == 0
    out = capsys.readouterr().out
    assert "river: Which river flows through Lyon?" in out
    assert "Alice was born in Lyon" in out and "[1] " in out and "pages read" in out


def test_mistakes_are_one_line_errors(kb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", QUESTION, "--api", "http://127.0.0.1:9", "--backend", "google"]) == 2
    assert "unknown search backend" in capsys.readouterr().err
    assert main(["search", " ", "--api", "http://127.0.0.1:9", "--backend", f"local:{kb}"]) == 2
    assert main(["search", QUESTION, "--model", str(kb), "--backend", f"local:{kb}", "--max-nodes", "0"]) == 2
    err = capsys.readouterr().err
    assert "question is empty" in err and "--max-nodes" in err and "Traceback" not in err
