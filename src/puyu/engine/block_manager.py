"""Paged KV-cache blocks: a free pool, per-sequence block tables and a prefix cache.

A block holds `block_size` consecutive tokens of one sequence. A full block is identified by a chained
hash of its content, hash(parent block's hash, its token ids), so equal hashes mean equal prefixes. Full
blocks stay in the cache after their sequences finish (reference count 0) and are reused by any later
sequence with the same prefix; when the pool runs dry the least recently freed of them are evicted.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict, deque
from dataclasses import dataclass

from puyu.engine.sequence import Sequence


def block_hash(parent: int | None, tokens: list[int]) -> int:
    """Content hash of a full block given its parent's hash (64-bit blake2b: collisions are negligible)."""
    data = struct.pack(f"<q{len(tokens)}q", -1 if parent is None else parent, *tokens)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


@dataclass
class BlockStats:
    total: int
    used: int  # referenced by at least one sequence
    cached: int  # unreferenced but holding a reusable full block
    free: int  # allocatable now: never-used plus cached (evictable)
    hit_tokens: int
    query_tokens: int

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.query_tokens if self.query_tokens else 0.0


class BlockManager:
    """Allocates KV blocks to sequences.

    Args:
        num_blocks: blocks in the pool.
        block_size: tokens per block.
        enable_prefix_caching: keep and share full blocks by content hash.
    """

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self.hashes: list[int | None] = [None] * num_blocks
        self._free: deque[int] = deque(range(num_blocks))  # blank blocks
        self._evictable: OrderedDict[int, int] = OrderedDict()  # block -> hash, least recently freed first
        self._by_hash: dict[int, int] = {}  # hash -> block, for every cached full block
        self.hit_tokens = 0
        self.query_tokens = 0

    # ---- accounting -----------------------------------------------------------------------------

    @property
    def num_free(self) -> int:
        return len(self._free) + len(self._evictable)

    def stats(self) -> BlockStats:
        return BlockStats(
            total=self.num_blocks,
            used=self.num_blocks - self.num_free,
            cached=len(self._evictable),
            free=self.num_free,
            hit_tokens=self.hit_tokens,
            query_tokens=self.query_tokens,
        )

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    # ---- sequences ------------------------------------------------------------------------------

    def admit(self, seq: Sequence) -> None:
        """Give a waiting sequence (empty block table) its cached prefix blocks, if any.

        At least one token is left to compute, since the next token needs the last position's logits.
        Requests that want prompt logprobs skip the cache: cached positions produce no logits.
        """
        assert not seq.block_table
        if not self.enable_prefix_caching:
            return
        tokens = seq.hash_ids
        usable = (len(tokens) - 1) // self.block_size
        count_query = not seq.admitted
        if count_query:
            self.query_tokens += len(seq.prompt_ids)
        if seq.params.prompt_logprobs is not None:
            return
        parent = seq.hash_seed
        for i in range(usable):
            digest = block_hash(parent, tokens[i * self.block_size : (i + 1) * self.block_size])
            block = self._by_hash.get(digest)
            if block is None:
                break
            self._ref(block)
            seq.block_table.append(block)
            seq.block_hashes.append(digest)
            parent = digest
        seq.num_computed_tokens = len(seq.block_table) * self.block_size
        if count_query:
            hit = min(seq.num_computed_tokens, len(seq.prompt_ids))
            seq.num_cached_tokens = hit
            self.hit_tokens += hit

    def can_allocate(self, seq: Sequence, num_tokens: int) -> bool:
        """Whether the table can grow to hold `num_tokens` tokens."""
        return self.blocks_needed(num_tokens) - len(seq.block_table) <= self.num_free

    def allocate(self, seq: Sequence, num_tokens: int) -> bool:
        """Grow the block table to hold `num_tokens` tokens; False (and no change) if blocks run out."""
        if not self.can_allocate(seq, num_tokens):
            return False
        while len(seq.block_table) < self.blocks_needed(num_tokens):
            seq.block_table.append(self._take())
        return True

    def commit(self, seq: Sequence) -> None:
        """Register the sequence's newly completed blocks (all their tokens computed) in the prefix cache."""
        if not self.enable_prefix_caching:
            return
        full = min(seq.num_computed_tokens // self.block_size, len(seq.block_table))
        tokens = seq.hash_ids
        while len(seq.block_hashes) < full:
            i = len(seq.block_hashes)
            parent = seq.block_hashes[-1] if seq.block_hashes else seq.hash_seed
            digest = block_hash(parent, tokens[i * self.block_size : (i + 1) * self.block_size])
            seq.block_hashes.append(digest)
            block = seq.block_table[i]
            if digest not in self._by_hash and self.hashes[block] is None:
                self._by_hash[digest] = block
                self.hashes[block] = digest

    def free(self, seq: Sequence) -> None:
        """Release the sequence's blocks; its full cached blocks stay reusable until evicted."""
        # Last block first: it becomes the least recently freed, so a prefix's tail is evicted before its head.
        for block in reversed(seq.block_table):
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                digest = self.hashes[block]
                if digest is None:
                    self._free.append(block)
                else:
                    self._evictable[block] = digest
        seq.block_table = []
        seq.block_hashes = []

    # ---- blocks ---------------------------------------------------------------------------------

    def _ref(self, block: int) -> None:
        if self.ref_counts[block] == 0:
            self._evictable.pop(block, None)
        self.ref_counts[block] += 1

    def _take(self) -> int:
        if self._free:
            block = self._free.popleft()
        else:
            block, digest = self._evictable.popitem(last=False)
            del self._by_hash[digest]
            self.hashes[block] = None
        self.ref_counts[block] = 1
        return block
