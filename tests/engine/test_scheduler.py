"""The scheduler with a mock runner: order, budget, chunked prefill, preemption, prefix hits, abort."""

from __future__ import annotations

import random

from puyu.engine.block_manager import BlockManager
from puyu.engine.scheduler import Scheduler, SchedulerOutput
from puyu.engine.sequence import Sequence, Status
from puyu.generation.sampling import SamplingParams


def _scheduler(num_blocks: int = 64, block_size: int = 4, max_seqs: int = 8, budget: int = 32, cache: bool = True):
    return Scheduler(BlockManager(num_blocks, block_size, cache), max_seqs, budget)


def _seq(request_id: str, prompt_len: int, max_tokens: int = 4, first: int = 0) -> Sequence:
    return Sequence(request_id, list(range(first, first + prompt_len)), SamplingParams(max_tokens=max_tokens))


def _run_step(scheduler: Scheduler, plan: SchedulerOutput) -> list[Sequence]:
    """Mock runner + engine: advance computed tokens, 'sample' token 1 for completing chunks, finish at max_tokens."""
    done = []
    for chunk in plan.chunks:
        seq = chunk.seq
        assert chunk.start == seq.num_computed_tokens
        assert len(seq.block_table) * scheduler.blocks.block_size >= chunk.start + chunk.num_tokens
        seq.num_computed_tokens += chunk.num_tokens
        scheduler.blocks.commit(seq)
        if chunk.completes:
            seq.output_ids.append(1000 + len(seq.output_ids))
            if len(seq.output_ids) >= seq.params.max_tokens:
                scheduler.finish(seq)
                done.append(seq)
    return done


def _drain(scheduler: Scheduler, limit: int = 1000) -> list[str]:
    order = []
    for _ in range(limit):
        if not scheduler.has_unfinished():
            return order
        order += [s.request_id for s in _run_step(scheduler, scheduler.schedule())]
    raise AssertionError("did not finish")


def test_fcfs_admission_and_max_num_seqs():
    scheduler = _scheduler(max_seqs=2, budget=100)
    for name in "abc":
        scheduler.add(_seq(name, 5))
    plan = scheduler.schedule()
    assert [c.seq.request_id for c in plan.chunks] == ["a", "b"]
    assert [s.request_id for s in scheduler.waiting] == ["c"]


def test_token_budget_and_chunked_prefill():
    scheduler = _scheduler(budget=8)
    seq = _seq("long", 20)
    scheduler.add(seq)
    chunks = []
    while not seq.output_ids:
        plan = scheduler.schedule()
        assert plan.num_tokens <= 8
        chunks += [(c.start, c.num_tokens) for c in plan.chunks]
        _run_step(scheduler, plan)
    assert chunks == [(0, 8), (8, 8), (16, 4)]


def test_running_decodes_come_before_new_prefills_within_the_budget():
    scheduler = _scheduler(budget=6)
    scheduler.add(_seq("a", 3))
    _run_step(scheduler, scheduler.schedule())  # a prefilled, one token sampled
    scheduler.add(_seq("b", 10))
    plan = scheduler.schedule()
    assert [(c.seq.request_id, c.num_tokens) for c in plan.chunks] == [("a", 1), ("b", 5)]


def test_preemption_when_blocks_run_out_then_everything_completes():
    # 6 blocks of 4 tokens; three sequences that each grow to 12 tokens cannot all fit.
    scheduler = _scheduler(num_blocks=6, budget=64)
    for name in "abc":
        scheduler.add(_seq(name, 5, max_tokens=7, first=ord(name) * 100))
    preempted = []
    for _ in range(200):
        if not scheduler.has_unfinished():
            break
        plan = scheduler.schedule()
        preempted += [s.request_id for s in plan.preempted]
        assert not plan.out_of_blocks
        _run_step(scheduler, plan)
    assert not scheduler.has_unfinished()
    assert preempted and preempted[0] == "c"  # the newest running sequence goes first
    assert scheduler.num_preempted_total == len(preempted)
    assert scheduler.blocks.stats().used == 0


def test_preempted_sequence_returns_to_the_front_and_recomputes_its_output():
    scheduler = _scheduler(num_blocks=4, budget=64, cache=False)
    a, b = _seq("a", 4, max_tokens=8), _seq("b", 4, max_tokens=8, first=50)
    scheduler.add(a)
    scheduler.add(b)
    _run_step(scheduler, scheduler.schedule())
    while b.status is Status.RUNNING:
        _run_step(scheduler, scheduler.schedule())
    assert b.status is Status.WAITING and scheduler.waiting[0] is b
    assert b.num_computed_tokens == 0 and b.block_table == [] and b.output_ids  # output kept, recomputed later
    _drain(scheduler)
    assert len(b.output_ids) == 8


def test_sequence_too_long_for_the_whole_pool_is_reported():
    scheduler = _scheduler(num_blocks=2, block_size=4, budget=64)
    seq = _seq("big", 7, max_tokens=10)
    scheduler.add(seq)
    seen = []
    for _ in range(10):
        plan = scheduler.schedule()
        seen += plan.out_of_blocks
        if seen:
            break
        _run_step(scheduler, plan)
    assert seen == [seq] and not scheduler.running


def test_prefix_cache_hits_for_a_shared_prefix():
    scheduler = _scheduler(block_size=4, budget=64)
    shared = list(range(16))
    first = Sequence("first", [*shared, 99], SamplingParams(max_tokens=2))
    scheduler.add(first)
    _drain(scheduler)
    later = [Sequence(f"s{i}", [*shared, 200 + i, 7], SamplingParams(max_tokens=2)) for i in range(3)]
    for seq in later:
        scheduler.add(seq)
    _drain(scheduler)
    assert [s.num_cached_tokens for s in later] == [16, 16, 16]
    stats = scheduler.blocks.stats()
    assert stats.hit_tokens == 48 and stats.query_tokens == 17 + 3 * 18
    assert stats.used == 0


def test_abort_and_random_workload_leave_every_block_free():
    rng = random.Random(0)
    scheduler = _scheduler(num_blocks=24, block_size=4, max_seqs=4, budget=16)
    seqs = []
    for step in range(400):
        if step < 60 and rng.random() < 0.5:
            common = [1, 2, 3, 4] if rng.random() < 0.5 else []
            seq = Sequence(
                f"r{step}",
                common + [rng.randrange(500) for _ in range(rng.randrange(1, 20))],
                SamplingParams(max_tokens=rng.randrange(1, 12)),
            )
            seqs.append(seq)
            scheduler.add(seq)
        if seqs and rng.random() < 0.05:
            scheduler.finish(rng.choice(seqs))  # abort, possibly of an already finished one
        _run_step(scheduler, scheduler.schedule())
    _drain(scheduler)
    stats = scheduler.blocks.stats()
    assert stats.used == 0 and stats.free == 24
    assert all(count == 0 for count in scheduler.blocks.ref_counts)
