"""Documents → token shards: exact packing, splits, bad input, parallel determinism, resume."""

from __future__ import annotations

import gzip
import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import zstandard

from puyu.data import tokenize as tokenize_module
from puyu.data.document import Document
from puyu.data.shards import read_manifest
from puyu.data.tokenize import SourceSpec, TokenizeConfig, document_ids, in_validation, tokenize_documents
from puyu.errors import PuyuError
from puyu.tokenizer import Tokenizer, byte_level_tokenizer, train_bpe

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "大型语言模型通过预测下一个词来学习语言。今天天气很好。",
    "Mixed 中英文 text with numbers 12345 and emoji 😀🎉.",
    "  leading and trailing spaces  ",
    "ends with a literal end-of-text token </s>",
    "<|im_start|>user\n你好<|im_end|>",
    "x",
    "def f(x):\n    return x  # 注释\n" * 5,
]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _docs(prefix: str, n: int) -> list[dict]:
    return [Document(TEXTS[i % len(TEXTS)] + f" #{i}", f"{prefix}:{i}", prefix).to_json() for i in range(n)]


def _read_split(folder: Path, split: str) -> list[list[int]]:
    """Documents of a split, read the way an outside tool would: numpy and the manifest only."""
    manifest = json.loads((folder / "manifest.json").read_text())
    dtype = {"uint16": "<u2", "uint32": "<u4"}[manifest["dtype"]]
    docs = []
    for entry in manifest["splits"][split]:
        tokens = np.fromfile(folder / entry["file"], dtype=dtype)
        idx = np.load(folder / entry["index_file"])
        assert len(idx) == entry["documents"] + 1 and idx[-1] == entry["tokens"] == len(tokens)
        docs += [tokens[idx[i] : idx[i + 1]].tolist() for i in range(len(idx) - 1)]
    return docs


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".bin", ".idx")}


@pytest.fixture(scope="module")
def tok_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    out = {}
    for family in ("internlm2", "qwen2"):
        byte_level_tokenizer(family).save_pretrained(root / family)
        out[family] = root / family
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 30), encoding="utf-8")
    train_bpe([corpus], 400, root / "bpe", show_progress=False)
    out["bpe"] = root / "bpe"
    eos_tok = byte_level_tokenizer("internlm2")
    eos_tok.add_eos = True
    eos_tok.save_pretrained(root / "add_eos")
    out["add_eos"] = root / "add_eos"
    return out


def _config(tok: Path, out: Path, *paths: Path, **kwargs: object) -> TokenizeConfig:
    sources = [SourceSpec("web", [str(p) for p in paths])]
    return TokenizeConfig(tokenizer=str(tok), output=str(out), sources=sources, **kwargs)


@pytest.mark.parametrize("family", ["internlm2", "qwen2", "bpe", "add_eos"])
def test_packing_is_exact(tmp_path: Path, tok_dirs: dict[str, Path], family: str) -> None:
    a = _jsonl(tmp_path / "a.jsonl", _docs("a", 20))
    b = _jsonl(tmp_path / "b.jsonl", [{"text": t} for t in TEXTS])  # plain rows without id
    manifest_path = tokenize_documents(_config(tok_dirs[family], tmp_path / "out", a, b, shard_tokens=150), False)
    tok = Tokenizer.from_pretrained(tok_dirs[family])
    texts = [r["text"] for r in _docs("a", 20)] + TEXTS
    docs = _read_split(tmp_path / "out", "train")
    eos, bos = tok.eos_id, tok.bos_id
    assert len(docs) == len(texts)
    for doc, text in zip(docs, texts, strict=True):
        encoded = tok.encode(text)
        expected = encoded if tok.add_eos else [*encoded, eos]  # EOS ends every document exactly once
        assert doc == expected
        assert (doc[-1] == eos and doc[-2] != eos) or text.endswith(("</s>", "<|endoftext|>"))
        assert (doc[0] == bos) == tok.add_bos
    manifest = read_manifest(manifest_path.parent)
    shards = manifest["splits"]["train"]
    assert len(shards) > 2 and manifest["splits"]["validation"] == []
    # A shard rolls over with the document that takes it to shard_tokens; documents are never cut.
    for shard, following in itertools.pairwise(shards):
        if shard["input"] == following["input"]:
            idx = np.load(tmp_path / "out" / shard["index_file"])
            assert idx[-2] < 150 <= idx[-1]
    assert [s["file"] for s in shards][:2] == ["train-web-00000-0000.bin", "train-web-00000-0001.bin"]
    assert manifest["totals"] == {"documents": len(texts), "tokens": sum(map(len, docs))}
    assert manifest["sources"] == {"web": {"documents": len(texts), "tokens": sum(map(len, docs)), "weight": 1.0}}
    assert manifest["dtype"] == "uint16"
    assert manifest["tokenizer"]["vocab_size"] == tok.vocab_size and manifest["tokenizer"]["eos_id"] == eos
    assert manifest["tally"]["docs"]["tokenize/train"] == len(texts)


def test_large_vocabulary_uses_uint32(tmp_path: Path) -> None:
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3, "你好": 65536, "world": 70000}
    hf = HFTokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    Tokenizer._from_hf(hf, bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos=True).save_pretrained(
        tmp_path / "tok"
    )
    src = _jsonl(tmp_path / "a.jsonl", [{"text": "hello world 你好"}, {"text": "world"}])
    tokenize_documents(_config(tmp_path / "tok", tmp_path / "out", src), progress=False)
    assert read_manifest(tmp_path / "out")["dtype"] == "uint32"
    assert _read_split(tmp_path / "out", "train") == [[1, 3, 70000, 65536, 2], [1, 70000, 2]]


def test_bad_input_is_counted_with_its_line(tmp_path: Path, tok_dirs: dict[str, Path]) -> None:
    good = json.dumps({"id": "g", "text": "好的 good"}).encode()
    lines = [
        good,
        b"{not json",
        '{"text": "caf\xe9"}'.encode("latin-1"),  # invalid utf-8
        b"[1, 2]",
        b'{"body": "wrong field"}',
        b'{"text": 42}',
        b'{"text": "lone \\ud800 surrogate"}',
        b'{"text": ""}',
        b"",
        good,
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(lines) + b"\n")
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(gzip.compress(good + b"\n"))
    zst = tmp_path / "d.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(good + b"\n" + good + b"\n"))
    truncated = tmp_path / "e.jsonl.gz"
    truncated.write_bytes(gzip.compress((good + b"\n") * 200)[:-30])
    tokenize_documents(_config(tok_dirs["internlm2"], tmp_path / "out", bad, gz, zst, truncated), progress=False)
    manifest = read_manifest(tmp_path / "out")
    problems = [(Path(p["source"]).name, p["line"], p["message"].split(":")[0]) for p in manifest["tally"]["problems"]]
    assert problems == [
        ("bad.jsonl", 2, "malformed json"),
        ("bad.jsonl", 3, "invalid utf-8"),  # the bad byte becomes U+FFFD and the document is kept
        ("bad.jsonl", 4, "not an object"),
        ("bad.jsonl", 5, "missing text field"),
        ("bad.jsonl", 6, "missing text field"),
        ("bad.jsonl", 7, "invalid text"),  # a lone surrogate, which no tokenizer takes
        ("e.jsonl.gz", None, "unreadable gzip"),
    ]
    docs = manifest["tally"]["docs"]
    assert docs["tokenize/empty"] == 1
    per_file: dict[str, int] = {}
    for entry in manifest["splits"]["train"]:
        per_file[Path(entry["input"]).name] = per_file.get(Path(entry["input"]).name, 0) + entry["documents"]
    assert per_file["bad.jsonl"] == 3 and per_file["c.jsonl.gz"] == 1 and per_file["d.jsonl.zst"] == 2
    assert 0 < per_file["e.jsonl.gz"] < 200  # what was readable before the damage is kept
    assert docs["tokenize/train"] == manifest["totals"]["documents"]
    tok = Tokenizer.from_pretrained(tok_dirs["internlm2"])
    assert _read_split(tmp_path / "out", "train")[1] == [*tok.encode("caf\ufffd"), tok.eos_id]


def test_validation_split_is_by_id(tmp_path: Path, tok_dirs: dict[str, Path]) -> None:
    rows = [{"id": f"doc-{i}", "text": f"document number {i}"} for i in range(2000)]
    a = _jsonl(tmp_path / "a.jsonl", rows)
    tokenize_documents(_config(tok_dirs["qwen2"], tmp_path / "one", a, validation_fraction=0.1), progress=False)
    # Same documents, shuffled and spread over two files, other shard size: same split.
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    b1, b2 = _jsonl(tmp_path / "b1.jsonl", shuffled[:700]), _jsonl(tmp_path / "b2.jsonl", shuffled[700:])
    config = _config(tok_dirs["qwen2"], tmp_path / "two", b1, b2, validation_fraction=0.1, shard_tokens=1000)
    tokenize_documents(config, progress=False)
    tok = Tokenizer.from_pretrained(tok_dirs["qwen2"])

    def texts(folder: str, split: str) -> set[str]:
        return {tok.decode(d, skip_special_tokens=True) for d in _read_split(tmp_path / folder, split)}

    validation = texts("one", "validation")
    assert 150 <= len(validation) <= 250  # 10% of 2000, binomial sd 13
    assert validation == texts("two", "validation")
    assert texts("one", "train") == texts("two", "train") and not validation & texts("one", "train")
    assert validation == {r["text"] for r in rows if in_validation(r["id"], 0.1)}


def test_one_and_two_workers_write_the_same_files(tmp_path: Path, tok_dirs: dict[str, Path]) -> None:
    inputs = [_jsonl(tmp_path / f"{i}.jsonl", _docs(str(i), 30 + 10 * i)) for i in range(3)]
    for workers in (1, 2):
        config = _config(tok_dirs["internlm2"], tmp_path / f"w{workers}", *inputs, shard_tokens=400, workers=workers)
        config.validation_fraction = 0.2
        tokenize_documents(config, progress=False)
    assert _files(tmp_path / "w1") == _files(tmp_path / "w2")
    m1, m2 = read_manifest(tmp_path / "w1"), read_manifest(tmp_path / "w2")
    assert m1["splits"] == m2["splits"] and m1["tally"] == m2["tally"] and m1["fingerprint"] == m2["fingerprint"]


def test_resume_after_interruption_gives_identical_files(
    tmp_path: Path, tok_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = [_jsonl(tmp_path / f"{i}.jsonl", _docs(str(i), 40)) for i in range(2)]
    tokenize_documents(_config(tok_dirs["internlm2"], tmp_path / "clean", *inputs, shard_tokens=300), False)
    expected = _files(tmp_path / "clean")
    tok = Tokenizer.from_pretrained(tok_dirs["internlm2"])
    expected_docs = [[*tok.encode(r["text"]), tok.eos_id] for i in range(2) for r in _docs(str(i), 40)]
    out = tmp_path / "out"
    config = _config(tok_dirs["internlm2"], out, *inputs, shard_tokens=300)

    # Interrupt in the middle of the second file.
    calls = {"n": 0}
    real = tokenize_module.document_ids

    def flaky(tokenizer: Tokenizer, text: str) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 60:
            raise KeyboardInterrupt
        return real(tokenizer, text)

    monkeypatch.setattr(tokenize_module, "document_ids", flaky)
    with pytest.raises(KeyboardInterrupt):
        tokenize_documents(config, progress=False)
    monkeypatch.setattr(tokenize_module, "document_ids", real)
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    partial = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".bin"}
    (out / ".train-web-00001-0003.bin.x1y2.tmp").write_bytes(b"left by a killed process")
    assert 0 < len(partial) < len([n for n in expected if n.endswith(".bin")])

    tokenize_documents(config, progress=False)
    assert _files(out) == expected
    assert _read_split(out, "train") == expected_docs
    assert {n: (out / n).stat().st_mtime_ns for n in partial} == partial  # shards kept, not rewritten
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    # Lose the manifest and one shard in the middle of file 0: only that file's shards from there are redone.
    (out / "manifest.json").unlink()
    (out / "train-web-00000-0001.bin").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".bin"}
    tokenize_documents(config, progress=False)
    assert _files(out) == expected
    assert _read_split(out, "train") == expected_docs
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".bin"}
    unchanged = {n for n in before if before[n] == after[n]}
    assert "train-web-00000-0000.bin" in unchanged and all(n in unchanged for n in before if "-00001-" in n)
    assert "train-web-00000-0002.bin" not in unchanged


def test_rerun_and_config_change(tmp_path: Path, tok_dirs: dict[str, Path]) -> None:
    src = _jsonl(tmp_path / "a.jsonl", _docs("a", 10))
    tokenize_documents(_config(tok_dirs["internlm2"], tmp_path / "out", src), progress=False)
    files = _files(tmp_path / "out")
    tokenize_documents(_config(tok_dirs["internlm2"], tmp_path / "out", src), progress=False)  # nothing to do
    assert _files(tmp_path / "out") == files
    # An input file changed since: its shards are redone.
    with src.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "new", "text": "one more 文档"}) + "\n")
    tokenize_documents(_config(tok_dirs["internlm2"], tmp_path / "out", src), progress=False)
    assert read_manifest(tmp_path / "out")["totals"]["documents"] == 11
    with pytest.raises(PuyuError, match="already holds a dataset tokenized with another config"):
        tokenize_documents(_config(tok_dirs["qwen2"], tmp_path / "out", src), progress=False)
    assert (tmp_path / "out" / "manifest.json").is_file()
    # An unfinished folder made with another config is cleared and redone.
    (tmp_path / "out" / "manifest.json").unlink()
    tokenize_documents(_config(tok_dirs["qwen2"], tmp_path / "out", src, shard_tokens=50), progress=False)
    assert read_manifest(tmp_path / "out")["tokenizer"]["eos_id"] == Tokenizer.from_pretrained(tok_dirs["qwen2"]).eos_id
    assert "train-web-00000-0001.bin" in _files(tmp_path / "out")


def test_id_outside_vocabulary_stops_the_run(
    tmp_path: Path, tok_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _jsonl(tmp_path / "a.jsonl", _docs("a", 3))
    monkeypatch.setattr(tokenize_module, "document_ids", lambda tokenizer, text: [1, 5000, 2])
    message = r"train-web-00000-0000\.bin: token id 5000 outside the vocabulary \(size 265\)"
    with pytest.raises(PuyuError, match=message):
        tokenize_documents(_config(tok_dirs["internlm2"], tmp_path / "out", src), progress=False)
    assert not list((tmp_path / "out").glob("*.bin"))


def test_document_ids_end_with_one_eos() -> None:
    tok = byte_level_tokenizer("internlm2")
    assert document_ids(tok, "ab") == [1, *tok.encode("ab", add_special_tokens=False), 2]
    # A literal EOS in the text is content; the document still gets its own EOS.
    assert document_ids(tok, "a</s>")[-2:] == [2, 2]


def test_config_and_input_errors(tmp_path: Path, tok_dirs: dict[str, Path]) -> None:
    tok = str(tok_dirs["internlm2"])
    with pytest.raises(PuyuError, match="no sources"):
        TokenizeConfig(tokenizer=tok, output="o")
    with pytest.raises(PuyuError, match=r"validation_fraction=1\.0"):
        TokenizeConfig(tokenizer=tok, output="o", validation_fraction=1.0, sources=[SourceSpec("a", ["x"])])
    with pytest.raises(PuyuError, match="given twice"):
        TokenizeConfig(tokenizer=tok, output="o", sources=[SourceSpec("a", ["x"]), {"name": "a", "paths": ["y"]}])
    with pytest.raises(PuyuError, match="source name 'a b'"):
        TokenizeConfig(tokenizer=tok, output="o", sources=[SourceSpec("a b", ["x"])])
    with pytest.raises(PuyuError, match=r"missing\.jsonl: no such file or folder"):
        tokenize_documents(_config(tok_dirs["internlm2"], tmp_path / "o", tmp_path / "missing.jsonl"), False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PuyuError, match="empty: no readable files"):
        tokenize_documents(_config(tok_dirs["internlm2"], tmp_path / "o", tmp_path / "empty"), False)
    with pytest.raises(PuyuError, match=r"\*\.jsonl: no readable files"):
        tokenize_documents(_config(tok_dirs["internlm2"], tmp_path / "o", tmp_path / "empty" / "*.jsonl"), False)
