"""`puyu data prepare` end to end: a mixed folder with planted duplicates, spam, PII and bad files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from data_support import make_pdf
from filter_corpus import BAD, CLEAN_EN, CLEAN_ZH

from puyu.cli import main
from puyu.configuration import load_config
from puyu.data import prepare as prepare_module
from puyu.data.prepare import PrepareConfig, PrepareTokenizeConfig, prepare
from puyu.errors import PuyuError
from puyu.tokenizer import Tokenizer, byte_level_tokenizer

REPO = Path(__file__).resolve().parents[2]


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _pdf_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _near_copy(text: str) -> str:
    words = text.split()
    words[len(words) // 2] = "remarkably"  # one word of ~100 changed: Jaccard of 5-shingles stays > 0.9
    return " ".join(words)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    (root / "en").mkdir(parents=True)
    (root / "en" / "news.txt").write_text(CLEAN_EN["news"] + "\nWrite to editor@example.org with corrections.\n")
    (root / "en" / "science.md").write_text(CLEAN_EN["science"])
    body = f"<article><p>{CLEAN_EN['history']}</p></article>"
    page = f"<html><head><title>History</title></head><body>{body}</body></html>"
    (root / "history.html").write_text(page)
    (root / "review.pdf").write_bytes(make_pdf([_pdf_text(CLEAN_EN["review"])]))
    rows = [
        {"text": CLEAN_EN["howto"]},
        {"text": CLEAN_ZH["news"]},
        {"text": BAD["duplicate_lines"]},
        {"text": CLEAN_EN["fiction"]},
    ]
    (root / "docs.jsonl").write_text(_jsonl(rows[:3]) + '{"text": "unterminated\n' + _jsonl(rows[3:]))
    # Files are read in path order, so these come after the originals in docs.jsonl and en/science.md.
    gz_rows = [
        {"text": _near_copy(CLEAN_EN["fiction"])},
        {"text": CLEAN_ZH["tech"]},
        {"text": "  " + CLEAN_EN["science"].upper() + "  "},  # exact duplicate after normalisation
        {"text": BAD["length"]},
    ]
    with gzip.open(root / "more.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(_jsonl(gz_rows))
    (root / "broken.txt").write_bytes(CLEAN_EN["biography"].encode() + b"\n\xff\xfe trailing bytes\n")
    (root / "empty.txt").write_text("")
    (root / "notes.xyz").write_text("not a document")
    return root


def _run(corpus: Path, out: Path, **changes) -> dict:
    tokenizer = out.parent / "tokenizer"
    if not tokenizer.exists():
        byte_level_tokenizer("internlm2").save_pretrained(tokenizer)
    settings = {"workers": 1, "tokenize": PrepareTokenizeConfig(tokenizer=str(tokenizer)), **changes}
    config = PrepareConfig(inputs=[str(corpus)], output=str(out), **settings)
    return prepare(config, progress=False)


def _written(out: Path) -> list[dict]:
    return [json.loads(line) for part in sorted((out / "documents").glob("*.jsonl")) for line in part.open()]


def test_mixed_folder_becomes_clean_documents_shards_and_report(corpus: Path, tmp_path: Path):
    out = tmp_path / "out"
    report = _run(corpus, out)
    docs = _written(out)
    texts = [d["text"] for d in docs]

    # every format was read: txt, md, html, pdf, jsonl, jsonl.gz
    sources = {Path(d["source"]).name for d in docs}
    assert sources >= {"news.txt", "science.md", "history.html", "review.pdf", "docs.jsonl", "more.jsonl.gz"}
    # planted spam removed by the filter meant for it; duplicates removed, first occurrence kept
    assert report["removed_by_filter"]["duplicate_lines"]["documents"] == 1
    assert report["removed_by_filter"]["length"]["documents"] == 1
    assert report["duplicates"]["exact"] == 1 and report["duplicates"]["near"] == 1
    assert sum(CLEAN_EN["fiction"] in t for t in texts) == 1 and not any("remarkably" in t for t in texts)
    assert sum("science" in Path(d["source"]).name for d in docs) == 1
    # PII scrubbed in what is written
    assert not any("editor@example.org" in t for t in texts) and any("<EMAIL>" in t for t in texts)
    assert report["pii"]["email"] == 1
    # bad input counted with file and line, nothing crashed
    kinds = report["problems"]["by_kind"]
    assert kinds["malformed json"] == 1 and kinds["empty file"] == 1 and kinds["unknown extension"] == 1
    assert kinds["invalid utf-8"] >= 1
    malformed = next(p for p in report["problems"]["examples"] if p["message"].startswith("malformed json"))
    assert malformed["source"].endswith("docs.jsonl") and malformed["line"] == 4
    # the accounting adds up
    assert report["read"]["documents"] == 13  # 1 txt + 1 md + 1 html + 1 pdf + 4 jsonl + 4 jsonl.gz + 1 broken txt
    removed = sum(v["documents"] for v in report["removed_by_filter"].values())
    assert report["written"]["documents"] == len(docs) == 13 - removed - 2
    # token shards hold exactly the written documents
    tokenizer = Tokenizer.from_pretrained(tmp_path / "tokenizer")
    manifest = json.loads((out / "tokens" / "manifest.json").read_text())
    shards = manifest["splits"]["train"]
    stream = np.concatenate([np.fromfile(out / "tokens" / s["file"], dtype=manifest["dtype"]) for s in shards])
    expected = [t for text in texts for t in [*tokenizer.encode(text), tokenizer.eos_id]]
    assert stream.tolist() == expected
    # the report files
    markdown = (out / "report.md").read_text()
    assert "| duplicate_lines | 1 |" in markdown and "malformed json" in markdown
    assert (out / "length_histogram.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "report.json").read_text())["written"]["documents"] == len(docs)


def test_interrupted_run_resumes_to_the_same_output(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    small_units = {"unit_bytes": 2000}  # several work units
    reference = _run(corpus, tmp_path / "clean", **small_units)

    calls: list[int] = []
    original_process, original_write = prepare_module.process_unit, prepare_module.write_part

    def counting_process(unit, config):
        calls.append(unit.index)
        return original_process(unit, config)

    def failing_write(unit, drop, config):
        if unit.index == 2:
            raise KeyboardInterrupt
        return original_write(unit, drop, config)

    monkeypatch.setattr(prepare_module, "process_unit", counting_process)
    monkeypatch.setattr(prepare_module, "write_part", failing_write)
    with pytest.raises(KeyboardInterrupt):
        _run(corpus, tmp_path / "resumed", **small_units)
    units = len(calls)
    assert units > 3
    monkeypatch.setattr(prepare_module, "write_part", original_write)
    resumed = _run(corpus, tmp_path / "resumed", **small_units)
    assert len(calls) == units  # pass 1 was not repeated
    for name in ("documents", "tokens"):
        a = sorted(p.relative_to(tmp_path / "clean") for p in (tmp_path / "clean" / name).rglob("*.*"))
        b = sorted(p.relative_to(tmp_path / "resumed") for p in (tmp_path / "resumed" / name).rglob("*.*"))
        assert a == b
        for rel in a:
            if rel.suffix in (".jsonl", ".bin", ".idx"):
                assert (tmp_path / "clean" / rel).read_bytes() == (tmp_path / "resumed" / rel).read_bytes()
    assert resumed["written"] == {**reference["written"]}
    assert resumed["duplicates"] == reference["duplicates"]


def test_two_workers_write_what_one_writes(corpus: Path, tmp_path: Path):
    one = _run(corpus, tmp_path / "one", unit_bytes=2000)
    two = _run(corpus, tmp_path / "two", unit_bytes=2000, workers=2)
    assert _written(tmp_path / "one") == _written(tmp_path / "two")
    assert one["removed_by_filter"] == two["removed_by_filter"]


def test_other_settings_into_the_same_folder_are_refused(corpus: Path, tmp_path: Path):
    _run(corpus, tmp_path / "out")
    with pytest.raises(PuyuError, match="already holds a run with other settings"):
        _run(corpus, tmp_path / "out", unit_bytes=10)


def test_shipped_configs_load():
    configs = sorted((REPO / "configs" / "data").glob("*.yaml"))
    assert configs
    for file in configs:
        load_config(PrepareConfig, file, ["inputs=[x]", "output=y"])


def test_cli_prepare_and_stats(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = REPO / "configs" / "data" / "prepare.yaml"
    out = tmp_path / "cli"
    argv = ["data", "prepare", str(config), f"inputs=[{corpus}]", f"output={out}", "workers=1", "--no-progress"]
    assert main(argv) == 0
    assert "report:" in capsys.readouterr().out
    assert main(["data", "stats", str(out / "documents"), "--out", str(tmp_path / "stats")]) == 0
    stats = json.loads((tmp_path / "stats" / "stats.json").read_text())
    assert stats["documents"] == len(_written(out)) and "en" in stats["languages"] and "zh" in stats["languages"]
    assert main(["data", "prepare", str(config), f"inputs=[{corpus}]", f"output={out}", "filters.lenght.min=3"]) == 2
    assert "unknown key 'lenght'" in capsys.readouterr().err


def test_settings_errors_come_before_anything_is_written(corpus: Path, tmp_path: Path):
    bad = PrepareConfig(inputs=[str(corpus)], output=str(tmp_path / "out"), workers=1)
    bad.filters.language.languages = ["xx"]
    with pytest.raises(PuyuError):
        prepare(bad, progress=False)
    assert not (tmp_path / "out").exists()
    good = PrepareConfig(inputs=[str(corpus)], output=str(tmp_path / "out"), workers=1)
    assert prepare(good, progress=False)["written"]["documents"] > 0


def test_tokenize_cli_with_weighted_sources(corpus: Path, tmp_path: Path):
    tokenizer = tmp_path / "tokenizer"
    byte_level_tokenizer("internlm2").save_pretrained(tokenizer)
    argv = ["data", "tokenize", "--tokenizer", str(tokenizer), "--output", str(tmp_path / "tokens"), "--no-progress"]
    argv += ["--source", f"docs=2.5:{corpus}/docs.jsonl", "--source", f"news={corpus}/en"]
    assert main(argv) == 0
    sources = json.loads((tmp_path / "tokens" / "manifest.json").read_text())["sources"]
    assert sources["docs"]["weight"] == 2.5 and sources["news"]["weight"] == 1.0
    assert main([*argv[:6], "--source", "nameonly"]) == 2
