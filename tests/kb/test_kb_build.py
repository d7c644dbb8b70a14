from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from kb_support import CORPUS, write_corpus

from puyu.cli import main
from puyu.errors import PuyuError
from puyu.kb import KnowledgeBase, build
from puyu.kb.embedders import EncoderEmbedder
from puyu.kb.store import read_snapshot


def _index_state(kb: Path) -> tuple[list[dict], dict, np.ndarray | None]:
    snapshot = read_snapshot(kb)
    chunks = [chunk.to_json() for chunk in snapshot.chunks]
    files = {entry["source"]: entry["sha256"] for entry in snapshot.manifest["files"].values()}
    vectors = np.asarray(snapshot.vectors) if snapshot.vectors is not None else None
    return chunks, files, vectors


def _scores(kb: Path, query: str) -> np.ndarray:
    return KnowledgeBase.open(kb, embedder=None).bm25_scores(query)


def test_chunk_spans_slice_back_to_the_document(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path / "docs")
    build([docs], tmp_path / "kb", chunk_size=60)
    for chunk in read_snapshot(tmp_path / "kb").chunks:
        if chunk.source.endswith(".jsonl"):
            line = int(chunk.doc_id.rsplit(":", 1)[1])
            text = json.loads(Path(chunk.source).read_text().splitlines()[line - 1])["text"]
        else:
            text = Path(chunk.source).read_text(encoding="utf-8")
        assert text[chunk.start : chunk.end] == chunk.text


def test_incremental_rebuild_equals_full_rebuild(tmp_path: Path, encoder_folder: Path) -> None:
    embedder = EncoderEmbedder(encoder_folder)
    docs = write_corpus(tmp_path / "docs")
    first = build([docs], tmp_path / "incremental", embedder=embedder)
    assert first.embedded == first.chunks and len(first.added) == len(CORPUS)
    (docs / "notes.txt").write_text("BM25 was changed.\n\nA new paragraph about rarity.\n")
    (docs / "zh.txt").unlink()
    (docs / "new.md").write_text("# New\n\nAn added file about paged attention.\n")
    second = build([docs], tmp_path / "incremental", embedder=embedder)
    assert second.changed == [str(docs / "notes.txt")] and second.added == [str(docs / "new.md")]
    assert second.removed == [str(docs / "zh.txt")] and second.unchanged == len(CORPUS) - 2
    assert second.embedded == sum(
        1 for c in read_snapshot(tmp_path / "incremental").chunks if "notes" in c.source or "new.md" in c.source
    )
    build([docs], tmp_path / "full", embedder=embedder)
    incremental, full = _index_state(tmp_path / "incremental"), _index_state(tmp_path / "full")
    assert incremental[0] == full[0] and incremental[1] == full[1]
    np.testing.assert_allclose(incremental[2], full[2], atol=1e-6)
    np.testing.assert_array_equal(
        _scores(tmp_path / "incremental", "paged attention BM25"), _scores(tmp_path / "full", "paged attention BM25")
    )


def test_versions_are_atomic_and_old_ones_pruned(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path / "docs")
    for _ in range(3):
        (docs / "notes.txt").write_text(f"changed {os.urandom(4).hex()}")
        build([docs], tmp_path / "kb")
    assert (tmp_path / "kb" / "CURRENT").read_text().strip() == "v3"
    assert build([docs], tmp_path / "kb").version == 3  # nothing changed: no new version
    assert build([docs], tmp_path / "kb", tokenizer="jieba").version == 4  # other BM25 terms: re-indexed
    assert sorted(p.name for p in (tmp_path / "kb").iterdir() if p.name.startswith("v")) == ["v3", "v4"]
    assert not [p for p in (tmp_path / "kb").iterdir() if p.name.startswith(".v")]


def test_remove_and_files_outside_the_inputs_are_kept(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path / "docs")
    extra = tmp_path / "extra.md"
    extra.write_text("# Extra\n\nKept across builds of the folder.\n")
    build([docs, extra], tmp_path / "kb")
    report = build([docs], tmp_path / "kb")
    assert report.removed == [] and report.unchanged == len(CORPUS) + 1
    assert main(["kb", "remove", str(tmp_path / "kb"), str(extra)]) == 0
    assert all(chunk.source != str(extra) for chunk in read_snapshot(tmp_path / "kb").chunks)
    assert main(["kb", "remove", str(tmp_path / "kb"), "nothere.md"]) == 2


def test_bad_files_are_counted_and_any_language_is_read(tmp_path: Path) -> None:
    docs = write_corpus(
        tmp_path / "docs",
        {
            "ok.md": "# Да\n\nРусский текст. 日本語の文章です。 النص العربي.",
            "empty.txt": "",
            "broken.pdf": "%PDF-1.4 not really",
            "broken.docx": "not a zip",
            "bad.jsonl": '{"text": "fine"}\nnot json\n',
            "image.png": "binary",
        },
    )
    report = build([docs], tmp_path / "kb")
    messages = {Path(p["source"]).name: p["message"] for p in report.problems}
    assert set(messages) >= {"empty.txt", "broken.pdf", "broken.docx", "bad.jsonl", "image.png"}
    kb = KnowledgeBase.open(tmp_path / "kb", embedder=None)
    assert kb.search("日本語", k=1)[0].chunk.source.endswith("ok.md")
    assert kb.search("русский", k=1)[0].chunk.source.endswith("ok.md")


def test_office_files_are_read(tmp_path: Path) -> None:
    import docx
    import openpyxl

    document = docx.Document()
    document.add_paragraph("The warranty lasts two years.")
    document.save(str(tmp_path / "terms.docx"))
    book = openpyxl.Workbook()
    book.active.append(["part", "price"])
    book.active.append(["gearbox", 120])
    book.save(str(tmp_path / "prices.xlsx"))
    assert zipfile.is_zipfile(tmp_path / "terms.docx")
    build([tmp_path / "terms.docx", tmp_path / "prices.xlsx"], tmp_path / "kb")
    kb = KnowledgeBase.open(tmp_path / "kb", embedder=None)
    assert kb.search("warranty", k=1)[0].chunk.source.endswith("terms.docx")
    assert "gearbox | 120" in kb.search("gearbox price", k=1)[0].chunk.text


def test_an_empty_knowledge_base_searches_to_nothing(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    report = build([tmp_path / "docs"], tmp_path / "kb")
    assert report.chunks == 0
    kb = KnowledgeBase.open(tmp_path / "kb")
    assert kb.search("anything") == [] and kb.signals("anything")["bm25_top"] == 0.0


def test_another_embedder_is_refused_in_one_line(tmp_path: Path, encoder_folder: Path, capsys) -> None:
    docs = write_corpus(tmp_path / "docs")
    build([docs], tmp_path / "kb")
    with pytest.raises(PuyuError, match="was built with no embedder"):
        build([docs], tmp_path / "kb", embedder=EncoderEmbedder(encoder_folder))
    assert main(["kb", "search", str(tmp_path / "kb"), "x", "--embedder", str(encoder_folder)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "was built with no embedder" in error


def test_cli_build_reports_and_not_a_kb(tmp_path: Path, capsys) -> None:
    docs = write_corpus(tmp_path / "docs")
    assert main(["kb", "build", str(docs), "--out", str(tmp_path / "kb"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chunks"] > 0
    assert main(["kb", "info", str(tmp_path / "nothere")]) == 2
    assert main(["kb", "build", str(tmp_path / "missing"), "--out", str(tmp_path / "kb")]) == 2
