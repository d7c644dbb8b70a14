"""The training dataset: exact windows, document boundaries, shuffling, ranks, mixing, exact resume."""

from __future__ import annotations

import itertools
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from puyu.data.dataset import TokenDataset, WindowPermutation, collate_windows
from puyu.data.document import Document
from puyu.data.shards import tokenizer_sha256
from puyu.data.tokenize import SourceSpec, TokenizeConfig, tokenize_documents
from puyu.errors import PuyuError
from puyu.tokenizer import Tokenizer, byte_level_tokenizer

SEQ = 32
ENGLISH = ["The quick brown fox jumps over the lazy dog.", "Tokens, not characters.", "a", "Hello world " * 12]
CHINESE = ["大型语言模型通过预测下一个词来学习语言。", "今天天气很好，我们去公园散步吧。", "好"]


def _build(root: Path, name: str, family: str, texts: list[str], n: int, files: int = 2) -> Path:
    tok_dir = root / f"tok-{family}"
    if not tok_dir.is_dir():
        byte_level_tokenizer(family).save_pretrained(tok_dir)
    paths = []
    for f in range(files):
        path = root / f"{name}-{f}.jsonl"
        docs = [Document(texts[(i * 7 + f) % len(texts)] + f" {f}.{i}", f"{name}:{f}:{i}", name) for i in range(n)]
        path.write_text("".join(json.dumps(d.to_json(), ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
        paths.append(str(path))
    config = TokenizeConfig(
        tokenizer=str(tok_dir),
        output=str(root / name),
        validation_fraction=0.2,
        shard_tokens=300,  # many small shards, so windows run across shard ends
        sources=[SourceSpec(name, paths)],
    )
    return tokenize_documents(config, progress=False).parent


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("datasets")
    return {
        "en": _build(root, "en", "internlm2", ENGLISH, 60),
        "zh": _build(root, "zh", "internlm2", CHINESE, 40),
        "qwen": _build(root, "qwen", "qwen2", ENGLISH, 20, files=1),
    }


def _stream(folder: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The split's tokens concatenated in manifest order, and the global document starts."""
    manifest = json.loads((folder / "manifest.json").read_text())
    tokens, starts, offset = [], [], 0
    for entry in manifest["splits"][split]:
        tokens.append(np.fromfile(folder / entry["file"], dtype="<u2"))
        starts.append(np.load(folder / entry["index_file"])[:-1] + offset)
        offset += entry["tokens"]
    return np.concatenate(tokens).astype(np.int64), np.concatenate(starts)


def _windows(ds: TokenDataset, n: int | None = None) -> list[tuple[int, ...]]:
    return [tuple(x["input_ids"].tolist()) for x in itertools.islice(iter(ds), n)]


def test_windows_cover_the_stream_exactly(folders: dict[str, Path]) -> None:
    stream, _ = _stream(folders["en"])
    ds = TokenDataset(folders["en"], SEQ, shuffle=False, loop=False)
    windows = _windows(ds)
    assert len(windows) == ds.num_windows == (len(stream) - 1) // SEQ > 20
    for w, window in enumerate(windows):
        assert window == tuple(stream[w * SEQ : (w + 1) * SEQ + 1])
    assert _windows(ds) == windows  # a finished pass rewinds; the next iterator starts over


def test_boundaries_match_the_documents(folders: dict[str, Path]) -> None:
    _, starts = _stream(folders["en"])
    tok = byte_level_tokenizer("internlm2")
    for w, item in enumerate(TokenDataset(folders["en"], SEQ, shuffle=False, loop=False)):
        begin = w * SEQ
        expected = [int(s - begin) for s in starts if begin <= s <= begin + SEQ]
        assert item["doc_starts"].tolist() == expected
        positions, pos = [], -1
        for i in range(SEQ + 1):
            pos = 0 if i == 0 or i in expected else pos + 1
            positions.append(pos)
        assert item["position_ids"].tolist() == positions
        assert item["cu_seqlens"].dtype == torch.int32
        assert item["cu_seqlens"].tolist() == [0, *[s for s in expected if 0 < s < SEQ], SEQ]
        ids = item["input_ids"]
        assert all(ids[s] == tok.bos_id for s in expected)
        assert all(ids[s - 1] == tok.eos_id for s in expected if s > 0)


def test_shuffle_is_a_seeded_permutation_per_epoch(folders: dict[str, Path]) -> None:
    ordered = _windows(TokenDataset(folders["en"], SEQ, shuffle=False, loop=False))
    n = len(ordered)
    ds = TokenDataset(folders["en"], SEQ, seed=1)
    epoch1, epoch2 = _windows(ds, n), _windows(ds, n)
    assert sorted(epoch1) == sorted(ordered) == sorted(epoch2)
    assert epoch1 != ordered and epoch1 != epoch2
    assert _windows(TokenDataset(folders["en"], SEQ, seed=1), n) == epoch1
    assert _windows(TokenDataset(folders["en"], SEQ, seed=2), n) != epoch1


def test_state_dict_resumes_with_the_next_window(folders: dict[str, Path]) -> None:
    ds = TokenDataset(folders["en"], SEQ, seed=3)
    n = ds.num_windows
    _windows(ds, n - 5)
    state = json.loads(json.dumps(ds.state_dict()))  # checkpoints store it as JSON
    following = _windows(ds, 20)  # runs into the next epoch
    resumed = TokenDataset(folders["en"], SEQ, seed=3)
    resumed.load_state_dict(state)
    assert _windows(resumed, 20) == following
    with pytest.raises(PuyuError, match="seq_len is 32 there, 16 here"):
        TokenDataset(folders["en"], 16, seed=3).load_state_dict(state)
    with pytest.raises(PuyuError, match="seed is 3 there, 4 here"):
        TokenDataset(folders["en"], SEQ, seed=4).load_state_dict(state)


def test_ranks_partition_the_windows(folders: dict[str, Path]) -> None:
    ordered = _windows(TokenDataset(folders["en"], SEQ, shuffle=False, loop=False))
    share = len(ordered) // 3

    def rank_windows(rank: int, shuffle: bool) -> list[tuple[int, ...]]:
        return _windows(TokenDataset(folders["en"], SEQ, rank=rank, world_size=3, loop=False, shuffle=shuffle))

    # In stream order rank r takes windows r, r + 3, r + 6...: disjoint, equal shares.
    assert [rank_windows(r, False) for r in range(3)] == [ordered[r::3][:share] for r in range(3)]
    # Shuffled, the three shares together are 3 * share distinct windows of the epoch (as a multiset).
    shuffled = [rank_windows(r, True) for r in range(3)]
    assert [len(s) for s in shuffled] == [share] * 3
    together = Counter(w for s in shuffled for w in s)
    assert together.total() == 3 * share and not together - Counter(ordered)
    assert shuffled[0] != ordered[0::3][:share]


def test_mixing_follows_the_weights_and_resumes(folders: dict[str, Path]) -> None:
    mix = [(folders["en"], 3.0), (folders["zh"], 1.0)]
    ds = TokenDataset(mix, SEQ, seed=5)
    steps = 4000
    _windows(ds, steps)
    state = ds.state_dict()
    per_rank = [ds._per_rank[0], ds._per_rank[1]]
    drawn = [epoch * per_rank[c] + cursor for c, (epoch, cursor) in enumerate(state["cursors"])]
    assert sum(drawn) == state["step"] == steps
    assert abs(drawn[0] / steps - 0.75) < 0.03
    following = _windows(ds, 50)
    resumed = TokenDataset(mix, SEQ, seed=5)
    resumed.load_state_dict(state)
    assert _windows(resumed, 50) == following
    # Chinese windows come only from the second folder: the mixture really draws from both.
    zh_stream, _ = _stream(folders["zh"])
    zh_windows = {tuple(zh_stream[w * SEQ : (w + 1) * SEQ + 1]) for w in range((len(zh_stream) - 1) // SEQ)}
    assert 0 < sum(w in zh_windows for w in following) < 50


def test_validation_split_and_pass_end(folders: dict[str, Path]) -> None:
    stream, _ = _stream(folders["en"], "validation")
    ds = TokenDataset(folders["en"], 8, "validation", loop=False, shuffle=False)
    assert len(_windows(ds)) == (len(stream) - 1) // 8
    with pytest.raises(PuyuError, match=r"split 'validation' has \d+ tokens, too few for one window"):
        TokenDataset(folders["qwen"], 10_000, "validation")


def test_tokenizer_mismatch_and_missing_shard(folders: dict[str, Path], tmp_path: Path) -> None:
    sha = tokenizer_sha256(Tokenizer.from_pretrained(folders["en"].parent / "tok-internlm2"))
    TokenDataset(folders["en"], SEQ, expect_tokenizer_sha256=sha)
    with pytest.raises(PuyuError, match=r"en/manifest\.json: tokenized with tokenizer sha256 \w+, expected 0000"):
        TokenDataset(folders["en"], SEQ, expect_tokenizer_sha256="0000")
    with pytest.raises(PuyuError, match=r"qwen/manifest\.json: tokenizer sha256 \w+ differs from"):
        TokenDataset([(folders["en"], 1.0), (folders["qwen"], 1.0)], SEQ)
    copy = tmp_path / "copy"
    shutil.copytree(folders["en"], copy)
    (copy / "train-en-00001-0000.bin").unlink()
    with pytest.raises(PuyuError, match=r"train-en-00001-0000\.bin: shard file missing"):
        TokenDataset(copy, SEQ)
    (copy / "manifest.json").unlink()
    with pytest.raises(PuyuError, match="no manifest"):
        TokenDataset(copy, SEQ)


def test_corrupt_token_is_reported(folders: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(folders["en"], copy)
    shard = copy / "train-en-00000-0000.bin"
    data = bytearray(shard.read_bytes())
    data[0:2] = (60000).to_bytes(2, "little")
    shard.write_bytes(bytes(data))
    ds = TokenDataset(copy, SEQ, shuffle=False)
    with pytest.raises(PuyuError, match=r"train-en-00000-0000\.bin: token id 60000 is not below the vocab size 265"):
        next(iter(ds))


def test_arguments_are_checked(folders: dict[str, Path]) -> None:
    with pytest.raises(PuyuError, match="rank=2, world_size=2"):
        TokenDataset(folders["en"], SEQ, rank=2, world_size=2)
    with pytest.raises(PuyuError, match="seq_len=0"):
        TokenDataset(folders["en"], 0)
    with pytest.raises(PuyuError, match="weights"):
        TokenDataset([(folders["en"], 1.0), (folders["zh"], 0.0)], SEQ)


def test_dataloader_batches_for_varlen_attention(folders: dict[str, Path]) -> None:
    ds = TokenDataset(folders["en"], SEQ, shuffle=False, loop=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_windows)
    batch = next(iter(loader))
    assert batch["input_ids"].shape == batch["position_ids"].shape == (4, SEQ + 1)
    cu = batch["cu_seqlens"]
    assert cu.dtype == torch.int32 and cu[0] == 0 and cu[-1] == 4 * SEQ
    assert batch["max_seqlen"] == int((cu[1:] - cu[:-1]).max())
    # Every row starts a segment; inside a row segments start where position_ids restart.
    for b in range(4):
        row_starts = [b * SEQ + i for i in range(SEQ) if batch["position_ids"][b, i] == 0]
        assert [int(c) for c in cu if b * SEQ <= c < (b + 1) * SEQ] == row_starts


def test_refuses_dataloader_worker_processes(folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # Inside a DataLoader worker the position would advance in a copy that state_dict never sees.
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    with pytest.raises(PuyuError, match="num_workers=0"):
        next(iter(TokenDataset(folders["en"], SEQ)))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 1000, 4097])
def test_window_permutation_is_a_bijection(n: int) -> None:
    perm = WindowPermutation(n, (0, 0, 0))
    values = [perm(i) for i in range(n)]
    assert sorted(values) == list(range(n))
    if n >= 64:
        assert values != list(range(n))
        assert values != [WindowPermutation(n, (0, 0, 1))(i) for i in range(n)]
    with pytest.raises(IndexError):
        perm(n)
