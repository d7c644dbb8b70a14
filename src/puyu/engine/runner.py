"""The model runner: one step's chunks → one flattened forward over the paged cache → logits.

All scheduled tokens of all sequences form a single [1, N] row with their own positions; the paged
cache routes attention per sequence. Only the positions whose logits are needed go through the final
norm and the output projection: the last position of each sequence that completes this step, and every
position of chunks whose request asked for prompt logprobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from puyu.engine.config import EngineConfig
from puyu.engine.paged_cache import PagedKVCache, PagedKVPool, SeqSpan
from puyu.engine.scheduler import ScheduledChunk
from puyu.model.decoder import CausalLM


@dataclass
class StepLogits:
    """Logits of one step: `last[i]` for the i-th completing chunk (in chunk order), and every position of
    the chunks that want prompt logprobs (`full[chunk index]`, [num_tokens, V])."""

    last: torch.Tensor
    completing: list[int]
    full: dict[int, torch.Tensor]


class ModelRunner:
    """Owns the KV pool and runs forwards.

    Args:
        model: the model (any module with CausalLM's structure; linear layers may be quantized).
        config: engine settings.
        num_blocks: KV blocks to allocate.
    """

    def __init__(self, model: CausalLM, config: EngineConfig, num_blocks: int) -> None:
        self.model = model
        self.config = config
        # A vision model's image embeddings by span (puyu.model.vision.runtime.VisionRuntime), or None.
        self.vision: Any = None
        mc = model.config
        self.device = model.device
        self.pool = PagedKVPool(
            mc.num_layers,
            mc.num_kv_heads,
            mc.head_dim or 0,
            num_blocks,
            config.block_size,
            model.dtype,
            self.device,
            config.kv_cache_dtype,
        )

    @torch.inference_mode()
    def execute(self, chunks: list[ScheduledChunk]) -> StepLogits:
        """Forward the chunks' tokens; logits for what the engine samples or scores."""
        bs = self.config.block_size
        # Decoding sequences first: their rows are then one slice of the flattened batch.
        order = sorted(range(len(chunks)), key=lambda i: chunks[i].num_tokens > 1)
        ids: list[int] = []
        adapters: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        spans: dict[int, SeqSpan] = {}
        for i in order:
            chunk, seq = chunks[i], chunks[i].seq
            end = chunk.start + chunk.num_tokens
            table = seq.block_table[: -(-end // bs)]
            spans[i] = SeqSpan(
                len(ids), chunk.num_tokens, chunk.start, torch.tensor(table, dtype=torch.long, device=self.device)
            )
            ids.extend(seq.token_ids[chunk.start : end])
            adapters.extend([seq.adapter] * chunk.num_tokens)
            positions.extend(range(chunk.start, end))
            slots.extend(table[p // bs] * bs + p % bs for p in range(chunk.start, end))
        pos = torch.tensor(positions, dtype=torch.long, device=self.device)
        cache = PagedKVCache(
            self.pool,
            [spans[i] for i in order],
            pos[None],
            torch.tensor(slots, dtype=torch.long, device=self.device),
            self.config.attention,
        )

        completing = [i for i, chunk in enumerate(chunks) if chunk.completes]
        full_chunks = [i for i, chunk in enumerate(chunks) if chunk.seq.params.prompt_logprobs is not None]
        rows = [spans[i].offset + spans[i].length - 1 for i in completing]
        for i in full_chunks:
            rows.extend(range(spans[i].offset, spans[i].offset + spans[i].length))
        rows_index = torch.tensor(rows, dtype=torch.long, device=self.device)
        input_ids = torch.tensor([ids], device=self.device)
        router = getattr(self.model, "adapter_router", None)
        if router is not None:  # served LoRA adapters: each row gets its own sequence's
            router.set(adapters, self.device)
        embeds = self._image_embeddings(input_ids, chunks, spans) if self.vision is not None else None
        logits = self.model(
            input_ids, positions=pos[None], cache=cache, logits_indices=rows_index, inputs_embeds=embeds
        )[0].float()
        full: dict[int, torch.Tensor] = {}
        at = len(completing)
        for i in full_chunks:
            full[i] = logits[at : at + spans[i].length]
            at += spans[i].length
        return StepLogits(last=logits[: len(completing)], completing=completing, full=full)

    def _image_embeddings(
        self, input_ids: torch.Tensor, chunks: list[ScheduledChunk], spans: dict[int, SeqSpan]
    ) -> torch.Tensor | None:
        """Token embeddings with each image's rows written over its placeholders (None: no image this step).

        A chunk may cover part of an image (chunked prefill, or a prefix-cache hit inside it): only the
        overlapping rows are written."""
        embeds: torch.Tensor | None = None
        for i, chunk in enumerate(chunks):
            start, end = chunk.start, chunk.start + chunk.num_tokens
            for image in chunk.seq.images:
                lo, hi = max(start, image.offset), min(end, image.offset + image.length)
                if lo >= hi:
                    continue
                if embeds is None:
                    embeds = self.model.model.embed_tokens(input_ids)
                rows = self.vision.embeddings(image)[lo - image.offset : hi - image.offset]
                at = spans[i].offset + lo - start
                embeds[0, at : at + hi - lo] = rows.to(embeds.dtype)
        return embeds
