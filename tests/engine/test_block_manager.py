"""Block pool, block tables and the prefix cache, without a model."""

from __future__ import annotations

from puyu.engine.block_manager import BlockManager, block_hash
from puyu.engine.sequence import Sequence
from puyu.generation.sampling import SamplingParams


def _seq(tokens: list[int], request_id: str = "r") -> Sequence:
    return Sequence(request_id, tokens, SamplingParams(max_tokens=4))


def _prefill(manager: BlockManager, seq: Sequence) -> None:
    """Admit, allocate and 'compute' the whole prompt, as the scheduler and engine would."""
    manager.admit(seq)
    seq.admitted = True
    assert manager.allocate(seq, seq.num_tokens)
    seq.num_computed_tokens = seq.num_tokens
    manager.commit(seq)


def test_chained_hash_depends_on_the_whole_prefix():
    first = block_hash(None, [1, 2, 3, 4])
    assert block_hash(first, [5, 6, 7, 8]) != block_hash(block_hash(None, [9, 2, 3, 4]), [5, 6, 7, 8])
    assert block_hash(None, [1, 2, 3, 4]) == first


def test_allocation_and_free_return_every_block():
    manager = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    seq = _seq(list(range(10)))
    assert manager.allocate(seq, 10)
    assert len(seq.block_table) == 3 and manager.num_free == 5
    assert not manager.allocate(seq, 100)  # all or nothing
    assert len(seq.block_table) == 3
    manager.free(seq)
    assert manager.num_free == 8 and manager.stats().used == 0


def test_shared_prefix_hits_only_full_blocks_and_counts_tokens():
    manager = BlockManager(num_blocks=16, block_size=4)
    prefix = [7] * 8
    first = _seq([*prefix, 1, 2, 3], "a")
    _prefill(manager, first)
    assert first.num_cached_tokens == 0
    second = _seq([*prefix, 4, 5, 6], "b")
    manager.admit(second)
    assert second.num_computed_tokens == 8 and second.num_cached_tokens == 8
    assert second.block_table == first.block_table[:2]
    assert manager.ref_counts[first.block_table[0]] == 2
    stats = manager.stats()
    assert (stats.hit_tokens, stats.query_tokens) == (8, 22)


def test_a_fully_cached_prompt_still_computes_its_last_token():
    manager = BlockManager(num_blocks=16, block_size=4)
    _prefill(manager, _seq([3] * 8, "a"))
    again = _seq([3] * 8, "b")
    manager.admit(again)
    assert again.num_computed_tokens == 4  # the second block holds the last token, which must run again


def test_freed_blocks_stay_cached_and_are_evicted_least_recently_freed_first():
    manager = BlockManager(num_blocks=6, block_size=2)
    old, new = _seq([1, 1, 2, 2, 9], "old"), _seq([5, 5, 6, 6, 9], "new")
    _prefill(manager, old)
    manager.free(old)
    _prefill(manager, new)
    manager.free(new)
    stats = manager.stats()
    assert stats.used == 0 and stats.free == 6 and stats.cached == 4  # the partial last blocks are not cached
    # Two blank blocks, then two evictions: the least recently freed cached blocks, i.e. `old`'s.
    filler = _seq([8] * 8, "filler")
    assert manager.allocate(filler, 8)
    probe_old, probe_new = _seq([1, 1, 2, 2, 0], "p1"), _seq([5, 5, 6, 6, 0], "p2")
    manager.admit(probe_old)
    manager.admit(probe_new)
    assert probe_old.num_cached_tokens == 0
    assert probe_new.num_cached_tokens == 4


def test_prompt_logprobs_requests_bypass_the_cache():
    manager = BlockManager(num_blocks=8, block_size=2)
    _prefill(manager, _seq([1, 2, 3, 4, 5], "a"))
    seq = Sequence("b", [1, 2, 3, 4, 5], SamplingParams(prompt_logprobs=0))
    manager.admit(seq)
    assert seq.num_computed_tokens == 0 and not seq.block_table
