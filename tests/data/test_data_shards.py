"""Token shard files: writer, memory-mapped reader, manifest checks, tokenizer fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from puyu.data.shards import (
    ShardWriter,
    TokenShard,
    numpy_dtype,
    open_split,
    read_manifest,
    token_dtype,
    tokenizer_sha256,
)
from puyu.errors import PuyuError
from puyu.tokenizer import Tokenizer, byte_level_tokenizer

DOCS = [[1, 5, 6, 2], [1, 7, 2], [1, 2], [1, 9, 9, 9, 9, 2]]


def _write(folder: Path, name: str, docs: list[list[int]], dtype: str = "uint16", vocab: int = 100) -> dict:
    writer = ShardWriter(folder, name, dtype, vocab)
    for doc in docs:
        writer.add(list(doc))
    return writer.close()


def test_dtype_choice_at_the_uint16_boundary() -> None:
    assert token_dtype(265) == "uint16"
    assert token_dtype(65536) == "uint16"  # ids 0..65535 fit
    assert token_dtype(65537) == "uint32"
    assert token_dtype(92544) == "uint32"
    assert numpy_dtype("uint16") == np.dtype("<u2")
    with pytest.raises(PuyuError, match="unknown"):
        numpy_dtype("int8")


def test_writer_round_trip_readable_with_plain_numpy(tmp_path: Path) -> None:
    entry = _write(tmp_path, "train-x-00000-0000", DOCS)
    assert entry == {
        "file": "train-x-00000-0000.bin",
        "index_file": "train-x-00000-0000.idx",
        "documents": 4,
        "tokens": 15,
    }
    raw = np.fromfile(tmp_path / entry["file"], dtype="<u2")
    idx = np.load(tmp_path / entry["index_file"])
    assert idx.dtype == np.int64 and idx.tolist() == [0, 4, 7, 9, 15]
    assert [raw[idx[i] : idx[i + 1]].tolist() for i in range(4)] == DOCS
    shard = TokenShard(tmp_path / entry["file"], tmp_path / entry["index_file"], "uint16", tokens=15, documents=4)
    assert len(shard) == 4 and shard.num_tokens == 15
    assert [shard.document(i).tolist() for i in range(4)] == DOCS
    assert shard.document(-1).tolist() == DOCS[-1]
    with pytest.raises(IndexError):
        shard.document(4)
    # No temporary files are left next to the shard.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-x-00000-0000.bin", "train-x-00000-0000.idx"]


def test_uint32_shard_keeps_large_ids(tmp_path: Path) -> None:
    docs = [[1, 70000, 92543, 2], [1, 65536, 2]]
    entry = _write(tmp_path, "s", docs, dtype="uint32", vocab=92544)
    assert (tmp_path / "s.bin").stat().st_size == 7 * 4
    shard = TokenShard(tmp_path / "s.bin", tmp_path / "s.idx", "uint32", tokens=entry["tokens"])
    assert [shard.document(i).tolist() for i in range(2)] == docs


def test_id_outside_vocabulary_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, "s", "uint16", 100)
    writer.add([1, 2])
    writer.add([1, 100, 2])
    with pytest.raises(PuyuError, match=r"s\.bin: token id 100 outside the vocabulary \(size 100\)"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, "s", "uint16", 100)
    writer.add([1, 2])
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_missing_or_inconsistent_shard_files(tmp_path: Path) -> None:
    _write(tmp_path, "s", DOCS)
    with pytest.raises(PuyuError, match=r"s\.bin: holds 15 tokens, the manifest says 16"):
        TokenShard(tmp_path / "s.bin", tmp_path / "s.idx", "uint16", tokens=16)
    with pytest.raises(PuyuError, match=r"s\.idx: indexes 4 documents, the manifest says 5"):
        len(TokenShard(tmp_path / "s.bin", tmp_path / "s.idx", "uint16", documents=5))
    (tmp_path / "s.idx").write_bytes(b"garbage")
    with pytest.raises(PuyuError, match=r"s\.idx: not a valid \.npy index"):
        len(TokenShard(tmp_path / "s.bin", tmp_path / "s.idx", "uint16"))
    np.save(tmp_path / "t.npy", np.array([0, 3, 10], dtype=np.int64))
    (tmp_path / "t.npy").rename(tmp_path / "s.idx")
    with pytest.raises(PuyuError, match="offsets run from 0 to 10, expected 0 to 15"):
        len(TokenShard(tmp_path / "s.bin", tmp_path / "s.idx", "uint16"))
    (tmp_path / "s.bin").unlink()
    with pytest.raises(PuyuError, match=r"s\.bin: shard file missing"):
        TokenShard(tmp_path / "s.bin", tmp_path / "s.idx", "uint16")


def test_closed_shard_reopens(tmp_path: Path) -> None:
    _write(tmp_path, "s", DOCS)
    shard = TokenShard(tmp_path / "s.bin", tmp_path / "s.idx", "uint16")
    assert shard.document(1).tolist() == DOCS[1]
    shard.close()
    assert shard.document(3).tolist() == DOCS[3]


def _manifest(folder: Path, **overrides: object) -> Path:
    manifest = {
        "format": "puyu-token-shards",
        "version": 1,
        "tokenizer": {"sha256": "x", "vocab_size": 100},
        "dtype": "uint16",
        "totals": {"documents": 4, "tokens": 15},
        "splits": {"train": [_write(folder, "s", DOCS)], "validation": []},
    }
    manifest.update(overrides)
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def test_read_manifest_and_open_split(tmp_path: Path) -> None:
    path = _manifest(tmp_path)
    assert read_manifest(tmp_path)["dtype"] == "uint16"
    assert read_manifest(path)["totals"]["tokens"] == 15  # the file itself also works
    shards = open_split(tmp_path, "train")
    assert [s.document(0).tolist() for s in shards] == [DOCS[0]]
    assert open_split(tmp_path, "validation") == []
    with pytest.raises(PuyuError, match="no split 'test'"):
        open_split(tmp_path, "test")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"manifest\.json: no manifest"),
        ("{not json", r"manifest\.json: unreadable manifest"),
        ('{"format": "other"}', "not a puyu-token-shards manifest"),
        ('{"format": "puyu-token-shards", "version": 99}', "format version 99"),
        ('{"format": "puyu-token-shards", "version": 1, "dtype": "uint16"}', "lacks 'tokenizer'"),
    ],
)
def test_read_manifest_errors_name_the_file(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(PuyuError, match=message):
        read_manifest(tmp_path)


def test_missing_shard_listed_in_manifest(tmp_path: Path) -> None:
    _manifest(tmp_path)
    (tmp_path / "s.idx").unlink()
    with pytest.raises(PuyuError, match=r"s\.idx: shard file missing"):
        open_split(tmp_path, "train")


def test_tokenizer_sha256_is_stable_across_saves(tmp_path: Path) -> None:
    tok = byte_level_tokenizer("internlm2")
    digest = tokenizer_sha256(tok)
    tok.save_pretrained(tmp_path / "a")
    loaded = Tokenizer.from_pretrained(tmp_path / "a")
    loaded.save_pretrained(tmp_path / "b")
    assert tokenizer_sha256(loaded) == digest
    assert tokenizer_sha256(Tokenizer.from_pretrained(tmp_path / "b")) == digest
    # The chat template does not decide ids, so it does not change the hash; BOS handling does.
    loaded.chat_template = "{{ messages }}"
    assert tokenizer_sha256(loaded) == digest
    loaded.add_bos = False
    assert tokenizer_sha256(loaded) != digest
    assert tokenizer_sha256(byte_level_tokenizer("qwen2")) != digest
