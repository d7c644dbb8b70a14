"""A request's state inside the engine: its tokens, how many are in the KV cache, its blocks."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from puyu.generation.sampling import SamplingParams


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """One request as the scheduler and block manager see it.

    Args:
        request_id: the caller's id.
        prompt_ids: prompt tokens.
        params: sampling and stopping rules.
        arrival: monotonically increasing admission number (FCFS order).
        adapter: which served LoRA adapter computes this sequence (0: the base model alone).
    """

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    arrival: int = 0
    output_ids: list[int] = field(default_factory=list)
    status: Status = Status.WAITING
    num_computed_tokens: int = 0  # tokens whose K/V are in the cache
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)  # chained hashes of the full blocks in block_table
    num_cached_tokens: int = 0  # prompt tokens served from the prefix cache at first admission
    admitted: bool = False
    state: Any = None  # the engine's per-request bookkeeping (detokenizer, sampler state)
    adapter: int = 0
    images: list[Any] = field(default_factory=list)  # ImageSpans of a vision prompt, in prompt order

    @property
    def hash_seed(self) -> int | None:
        """Parent hash of the first block: an adapter's KV differs from the base's, so its blocks never match them."""
        return None if self.adapter == 0 else -1 - self.adapter  # None hashes as -1

    @property
    def hash_ids(self) -> list[int]:
        """Token ids as the prefix cache hashes them: an image's placeholder run is one id repeated, so its
        positions take values derived from the image's pixel hash instead (negative: never a real token)."""
        if not self.images:
            return self.token_ids
        ids = self.token_ids
        for span in self.images:
            base = int(span.digest[:15], 16)
            ids[span.offset : span.offset + span.length] = [-1 - base - k for k in range(span.length)]
        return ids

    @property
    def token_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def num_uncomputed(self) -> int:
        return self.num_tokens - self.num_computed_tokens

    def reset_for_recompute(self) -> None:
        """Preemption by recomputation: forget the cache; prompt and output so far are prefilled again."""
        self.num_computed_tokens = 0
        self.block_table = []
        self.block_hashes = []
        self.status = Status.WAITING
