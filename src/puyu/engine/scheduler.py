"""Which sequences run in the next step, and how many of their tokens (pure Python, no torch).

Continuous batching with chunked prefill, FCFS: running sequences go first (one token each when
decoding, the next chunk when prefilling), then waiting ones are admitted in arrival order while the
token budget, the sequence limit and free blocks allow. When a running sequence needs a block and none
is free, the newest running sequence is preempted: its blocks are freed and it goes back to the front of
the waiting queue, to be recomputed (prompt and output so far) when there is room again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from puyu.engine.block_manager import BlockManager
from puyu.engine.sequence import Sequence, Status


@dataclass
class ScheduledChunk:
    """`num_tokens` tokens of `seq`, starting at position `start`, go through this step's forward."""

    seq: Sequence
    start: int
    num_tokens: int

    @property
    def completes(self) -> bool:
        """After this chunk every known token is computed, so the last position's logits pick the next token."""
        return self.start + self.num_tokens == self.seq.num_tokens


@dataclass
class SchedulerOutput:
    chunks: list[ScheduledChunk] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    # Sequences that cannot grow even with the whole pool to themselves: the engine ends them ("length").
    out_of_blocks: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(chunk.num_tokens for chunk in self.chunks)


class Scheduler:
    """FCFS continuous-batching scheduler.

    Args:
        block_manager: the KV block pool.
        max_num_seqs: most sequences running at once.
        max_num_batched_tokens: token budget of one step.
    """

    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.blocks = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preempted_total = 0
        self._arrivals = 0

    def add(self, seq: Sequence) -> None:
        seq.arrival = self._arrivals
        self._arrivals += 1
        seq.status = Status.WAITING
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def finish(self, seq: Sequence) -> None:
        """Remove a finished or aborted sequence and free its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.free(seq)
        seq.status = Status.FINISHED

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            num = min(seq.num_uncomputed, budget)
            if self._reserve(seq, num, out, first=i == 0):
                out.chunks.append(ScheduledChunk(seq, seq.num_computed_tokens, num))
                budget -= num
                i += 1
            # otherwise `seq` left the running list (preempted or out of blocks); `i` now points at the next one
        if out.preempted or out.out_of_blocks:
            return out  # no admissions in a step that had to take blocks back
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            self.blocks.admit(seq)
            seq.admitted = True
            num = min(seq.num_uncomputed, budget)
            if not self.blocks.allocate(seq, seq.num_computed_tokens + num):
                self.blocks.free(seq)
                seq.num_computed_tokens = 0
                if not self.running:  # the whole pool cannot hold even this chunk
                    self.waiting.popleft()
                    out.out_of_blocks.append(seq)
                break
            self.waiting.popleft()
            seq.status = Status.RUNNING
            self.running.append(seq)
            out.chunks.append(ScheduledChunk(seq, seq.num_computed_tokens, num))
            budget -= num
        return out

    def _reserve(self, seq: Sequence, num: int, out: SchedulerOutput, first: bool) -> bool:
        """Blocks for `num` more tokens of running `seq`, preempting the newest sequences as needed."""
        while not self.blocks.allocate(seq, seq.num_computed_tokens + num):
            victim = self.running[-1]
            if victim is seq and first:  # alone, with every other block free: it can never grow
                self.running.remove(seq)
                out.out_of_blocks.append(seq)
                return False
            self._preempt(victim)
            out.preempted.append(victim)
            if victim is seq:
                return False
        return True

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.free(seq)
        seq.reset_for_recompute()
        self.waiting.appendleft(seq)
        self.num_preempted_total += 1
