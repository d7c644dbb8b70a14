"""The training dataset over token shards: fixed-length windows with document boundaries, exact resume.

The shards of one split (in manifest order) form one token stream; window w is
`stream[w * seq_len : (w + 1) * seq_len + 1]`, so consecutive windows share one token and inputs
`[:-1]` / labels `[1:]` cover the stream exactly (the tail shorter than a window is left out). Documents
run across windows; where they start is read from the shards' indexes.

Each epoch visits the windows in an order drawn from (seed, folder, epoch) by a keyed pseudorandom
permutation, computed per index, so no permutation array is held even for billions of windows. Rank r
of a world of n takes positions r, r + n, r + 2n... of that order (every rank gets the same count, and no
window goes to two ranks). Several folders are mixed by weight: step k draws its folder from a generator
seeded by (seed, k // block), so the sequence depends only on the seed and the step. `state_dict()`
holds the step and each folder's (epoch, cursor), which is all it takes to continue exactly.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from puyu.data.shards import MANIFEST, TokenShard, open_split, read_manifest
from puyu.errors import PuyuError

_MASK64 = (1 << 64) - 1
_CHOICE_BLOCK = 4096
# Memory maps kept open per folder: bounded, since a dataset may have tens of thousands of shards.
_MAX_OPEN_SHARDS = 64
_STATE_FORMAT = "puyu-token-dataset"


def _mix64(x: int) -> int:
    """The splitmix64 finalizer: a fast, well-spread 64-bit hash."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
    return x ^ (x >> 31)


class WindowPermutation:
    """A pseudorandom bijection of `range(n)`: a 4-round Feistel network with cycle walking.

    Args:
        n: Size of the domain.
        key: Integers that pick the permutation (e.g. seed, folder, epoch).
    """

    def __init__(self, n: int, key: Sequence[int]) -> None:
        self.n = n
        bits = max(2, (n - 1).bit_length())
        bits += bits % 2
        self._half = bits // 2
        self._mask = (1 << self._half) - 1
        self._keys = [int(k) for k in np.random.SeedSequence([int(k) for k in key]).generate_state(4, np.uint64)]

    def __call__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(f"{i} outside range({self.n})")
        x = i
        while True:  # cycle walking: the network permutes [0, 4^half); repeat until back inside [0, n)
            left, right = x >> self._half, x & self._mask
            for k in self._keys:
                left, right = right, left ^ (_mix64(right ^ k) & self._mask)
            x = (left << self._half) | right
            if x < self.n:
                return x


class _Stream:
    """The windows of one folder's split."""

    def __init__(self, folder: Path, split: str, seq_len: int) -> None:
        self.folder = folder
        self.manifest = read_manifest(folder)
        self.shards = open_split(folder, split, self.manifest)
        sizes = [s.num_tokens for s in self.shards]
        self.starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        self.total = int(self.starts[-1])
        self.seq_len = seq_len
        self.num_windows = max(0, (self.total - 1) // seq_len)
        self.vocab_size = int(self.manifest["tokenizer"]["vocab_size"])
        self._open: OrderedDict[int, TokenShard] = OrderedDict()

    def _shard(self, i: int) -> TokenShard:
        shard = self.shards[i]
        self._open[i] = shard
        self._open.move_to_end(i)
        if len(self._open) > _MAX_OPEN_SHARDS:
            _, old = self._open.popitem(last=False)
            old.close()
        return shard

    def window(self, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens [seq_len + 1] of window `w` and the positions in it where a document starts."""
        begin = w * self.seq_len
        end = begin + self.seq_len + 1
        parts: list[np.ndarray] = []
        doc_starts: list[np.ndarray] = []
        i = int(np.searchsorted(self.starts, begin, side="right")) - 1
        pos = begin
        while pos < end:
            shard = self._shard(i)
            lo = pos - int(self.starts[i])
            hi = min(end, int(self.starts[i + 1])) - int(self.starts[i])
            part = shard.tokens[lo:hi]
            top = int(part.max())
            if top >= self.vocab_size:
                raise PuyuError(f"{shard.bin_path}: token id {top} is not below the vocab size {self.vocab_size}")
            parts.append(part)
            offsets = shard.offsets
            first, last = np.searchsorted(offsets, [lo, hi], side="left")
            doc_starts.append(np.asarray(offsets[first:last]) + (int(self.starts[i]) - begin))
            pos = int(self.starts[i]) + hi
            i += 1
        return np.concatenate(parts).astype(np.int64), np.concatenate(doc_starts).astype(np.int64)


def _sample(tokens: np.ndarray, doc_starts: np.ndarray) -> dict[str, torch.Tensor]:
    n = len(tokens)
    # Segments restart their positions at 0: at each document start, and at the window start for the
    # document running in from the previous window.
    if not (len(doc_starts) and doc_starts[0] == 0):
        seg_starts = np.concatenate([np.zeros(1, dtype=np.int64), doc_starts])
    else:
        seg_starts = doc_starts
    positions = np.arange(n, dtype=np.int64)
    segment = np.searchsorted(seg_starts, positions, side="right") - 1
    inputs = n - 1
    cu = np.concatenate([seg_starts[seg_starts < inputs], [inputs]]).astype(np.int32)
    return {
        "input_ids": torch.from_numpy(tokens),
        "position_ids": torch.from_numpy(positions - seg_starts[segment]),
        "doc_starts": torch.from_numpy(doc_starts),
        "cu_seqlens": torch.from_numpy(cu),
    }


def collate_windows(batch: Sequence[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Batch windows for a DataLoader (`collate_fn=collate_windows`).

    Returns:
        `input_ids` and `position_ids` stacked to [B, seq_len + 1]; `cu_seqlens` (int32) and
        `max_seqlen` for varlen attention over the B * seq_len inputs flattened row after row;
        `doc_starts` as the list of each window's tensor.
    """
    seq_len = batch[0]["input_ids"].shape[0] - 1
    cu = [b["cu_seqlens"][:-1] + i * seq_len for i, b in enumerate(batch)]
    cu.append(torch.tensor([len(batch) * seq_len], dtype=torch.int32))
    cu_seqlens = torch.cat(cu)
    return {
        "input_ids": torch.stack([b["input_ids"] for b in batch]),
        "position_ids": torch.stack([b["position_ids"] for b in batch]),
        "cu_seqlens": cu_seqlens,
        "max_seqlen": int((cu_seqlens[1:] - cu_seqlens[:-1]).max()),
        "doc_starts": [b["doc_starts"] for b in batch],
    }


class TokenDataset(torch.utils.data.IterableDataset):
    """Fixed-length training windows from one tokenized folder, or several mixed by weight.

    Each item is a dict: `input_ids` LongTensor[seq_len + 1] (inputs `[:-1]`, labels `[1:]`);
    `position_ids` LongTensor[seq_len + 1], restarting at 0 at each document start (and at position 0);
    `doc_starts` LongTensor of the positions where a document starts; `cu_seqlens` int32 segment
    boundaries over the seq_len inputs, starting at 0 and ending at seq_len. Use `collate_windows` to batch.

    A new iterator continues from the current state; with `loop=False` a pass ends after one epoch (for
    a mixture, when any folder runs out) and the state rewinds, so the next iterator starts a new pass.
    Use it with `DataLoader(num_workers=0)`: reads are memory-mapped and cheap, and the state must live
    in this object.

    Args:
        folder: A dataset folder, or (folder, weight) pairs to mix.
        seq_len: Tokens per training sequence.
        split: "train" or "validation".
        seed: Picks the window order and the mixing sequence.
        rank: This process's rank.
        world_size: Number of ranks sharing the data.
        loop: Start a new epoch (in a new order) when one ends.
        shuffle: Visit windows in a seeded order; False keeps stream order.
        expect_tokenizer_sha256: Refuse folders whose tokenizer hash differs (see `tokenizer_sha256`).

    Raises:
        PuyuError: A manifest or shard is missing, the folders' tokenizers differ from each other or from
            the one expected, or a folder has fewer windows than ranks.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str] | Sequence[tuple[str | os.PathLike[str], float]],
        seq_len: int,
        split: str = "train",
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        loop: bool = True,
        shuffle: bool = True,
        expect_tokenizer_sha256: str | None = None,
    ) -> None:
        super().__init__()
        pairs = [(folder, 1.0)] if isinstance(folder, (str, os.PathLike)) else [(f, float(w)) for f, w in folder]
        if not pairs:
            raise PuyuError("TokenDataset: no folders given")
        if seq_len < 1:
            raise PuyuError(f"seq_len={seq_len}: must be positive")
        if not 0 <= rank < world_size:
            raise PuyuError(f"rank={rank}, world_size={world_size}: need 0 <= rank < world_size")
        self.seq_len = seq_len
        self.split = split
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.loop = loop
        self.shuffle = shuffle
        self._streams = [_Stream(Path(f), split, seq_len) for f, _ in pairs]
        weights = np.array([w for _, w in pairs], dtype=np.float64)
        if not np.all(weights > 0):
            raise PuyuError(f"mixing weights {weights.tolist()}: must all be positive")
        self._weights = weights / weights.sum()
        self._check_tokenizers(expect_tokenizer_sha256)
        self._per_rank = [s.num_windows // world_size for s in self._streams]
        for stream, n in zip(self._streams, self._per_rank, strict=True):
            if n == 0:
                raise PuyuError(
                    f"{stream.folder}: split {split!r} has {stream.total} tokens, too few for one window of "
                    f"{seq_len + 1} per rank ({world_size} ranks)"
                )
        self._perms: dict[int, tuple[tuple[int, int, int], WindowPermutation]] = {}
        self._choices: tuple[int, np.ndarray] | None = None
        self._rewind()

    def _check_tokenizers(self, expected: str | None) -> None:
        first = self._streams[0]
        first_sha = first.manifest["tokenizer"].get("sha256")
        for stream in self._streams:
            sha = stream.manifest["tokenizer"].get("sha256")
            if expected is not None and sha != expected:
                raise PuyuError(
                    f"{stream.folder / MANIFEST}: tokenized with tokenizer sha256 {sha}, expected {expected}"
                )
            if sha != first_sha:
                raise PuyuError(
                    f"{stream.folder / MANIFEST}: tokenizer sha256 {sha} differs from {first_sha} of {first.folder}"
                )

    def _rewind(self) -> None:
        self._step = 0
        self._cursors = [[0, 0] for _ in self._streams]  # [epoch, position within this rank's share]

    @property
    def num_windows(self) -> int:
        """Windows this rank sees per epoch, over all folders."""
        return sum(self._per_rank)

    @property
    def manifests(self) -> list[dict[str, Any]]:
        """The folders' manifests."""
        return [s.manifest for s in self._streams]

    def _folder_at(self, step: int) -> int:
        if len(self._streams) == 1:
            return 0
        block = step // _CHOICE_BLOCK
        if self._choices is None or self._choices[0] != block:
            rng = np.random.default_rng([self.seed, 0x6D6978, block])
            self._choices = (block, rng.choice(len(self._streams), size=_CHOICE_BLOCK, p=self._weights))
        return int(self._choices[1][step % _CHOICE_BLOCK])

    def _window_index(self, c: int, epoch: int, cursor: int) -> int:
        index = cursor * self.world_size + self.rank
        if not self.shuffle:
            return index
        key = (self.seed, c, epoch)
        cached = self._perms.get(c)
        if cached is None or cached[0] != key:
            cached = self._perms[c] = (key, WindowPermutation(self._streams[c].num_windows, key))
        return cached[1](index)

    def __iter__(self) -> Any:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            raise PuyuError(
                "TokenDataset: use DataLoader(num_workers=0); its position (state_dict) must stay in the main process"
            )
        while True:
            c = self._folder_at(self._step)
            cursor = self._cursors[c]
            if cursor[1] >= self._per_rank[c]:
                if not self.loop:
                    self._rewind()
                    return
                cursor[0] += 1
                cursor[1] = 0
            w = self._window_index(c, cursor[0], cursor[1])
            tokens, doc_starts = self._streams[c].window(w)
            cursor[1] += 1
            self._step += 1
            yield _sample(tokens, doc_starts)

    def state_dict(self) -> dict[str, Any]:
        """The position after the last window handed out, plus the settings it depends on."""
        return {
            "format": _STATE_FORMAT,
            "version": 1,
            "seq_len": self.seq_len,
            "split": self.split,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "shuffle": self.shuffle,
            "windows": [s.num_windows for s in self._streams],
            "weights": self._weights.tolist(),
            "step": self._step,
            "cursors": [list(c) for c in self._cursors],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state` was taken.

        Raises:
            PuyuError: The state was taken with other settings or other data.
        """
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise PuyuError("TokenDataset.load_state_dict: not a TokenDataset state")
        mine = self.state_dict()
        for key in ("version", "seq_len", "split", "seed", "rank", "world_size", "shuffle", "windows"):
            if state.get(key) != mine[key]:
                raise PuyuError(f"TokenDataset.load_state_dict: {key} is {state.get(key)!r} there, {mine[key]!r} here")
        if not np.allclose(state.get("weights", []), mine["weights"]):
            there = state.get("weights")
            raise PuyuError(f"TokenDataset.load_state_dict: weights are {there} there, {mine['weights']} here")
        self._step = int(state["step"])
        self._cursors = [[int(e), int(p)] for e, p in state["cursors"]]
