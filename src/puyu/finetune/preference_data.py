"""Preference pairs for DPO-style training: a prompt with a chosen and a rejected response, tokenized.

Records are read by `puyu.data.conversations.normalize_preference_record` (TRL's prompt/chosen/rejected,
LLaMA-Factory's ranking sets, ShareGPT/OpenAI contexts, implicit whole conversations). Each side is the
prompt followed by its response, rendered with the chat template; only the response's assistant tokens
are labelled. A record missing `rejected` (or otherwise unusable) is a per-line error in the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from puyu.chat import ChatTemplate
from puyu.data.conversations import normalize_preference_record
from puyu.finetune.objectives import PreferenceBatch, reference_logps
from puyu.finetune.sft_data import (
    DataReport,
    EpochOrder,
    PathLike,
    Sample,
    Truncation,
    convert_records,
    count_kept,
    encode_chat,
    fit_length,
    gather_states,
    input_files,
    pad_rows,
    rank_state,
    require_samples,
    to_sample,
)
from puyu.tokenizer import Tokenizer
from puyu.train.distributed import DistInfo

__all__ = ["PreferenceBatches", "PreferencePair", "encode_pair", "load_preference_pairs", "normalize_preference_record"]


@dataclass
class PreferencePair:
    """A tokenized pair; `reference` holds the reference model's (chosen, rejected) log-probs once computed."""

    chosen: Sample
    rejected: Sample
    reference: tuple[float, float] | None = None


def encode_pair(tokenizer: Tokenizer, template: ChatTemplate, record: Mapping[str, Any]) -> tuple[Sample, Sample]:
    """The chosen and rejected samples of a normalized preference record (response tokens labelled)."""
    prompt = record["prompt"]
    sides = []
    for key in ("chosen", "rejected"):
        ids, mask = encode_chat(
            tokenizer, template, [*prompt, *record[key]], record.get("tools"), first_trained=len(prompt)
        )
        sides.append(to_sample(ids, mask))
    return sides[0], sides[1]


def load_preference_pairs(
    paths: PathLike | Sequence[PathLike],
    tokenizer: Tokenizer,
    template: ChatTemplate,
    tool_template: ChatTemplate | None = None,
    *,
    seq_len: int,
    truncation: Truncation = "right",
    format: str | None = None,
    progress: bool = False,
) -> tuple[list[PreferencePair], DataReport]:
    """Read preference JSONL into tokenized pairs.

    Bad records are skipped and reported as "<file>:<line>: <reason>" (e.g. "missing field: 'rejected'").
    A side longer than `seq_len` is cut on the right (both sides then count as one truncated pair) or the
    pair is dropped (`truncation: drop`); a pair with a side left without response tokens is dropped.

    Raises:
        PuyuError: a missing file, or no usable pair.
    """
    files = input_files(paths)
    report = DataReport(kind="preference", files=[str(f) for f in files])

    def encode(record: Any) -> tuple[Sample, Sample]:
        pair = normalize_preference_record(record, format=format)
        return encode_pair(tokenizer, (tool_template or template) if pair.get("tools") else template, pair)

    pairs: list[PreferencePair] = []
    for chosen, rejected in convert_records(files, report, encode, desc="preference data", progress=progress):
        fitted = [fit_length(side, seq_len, truncation) for side in (chosen, rejected)]
        if any(side is None or side.num_targets == 0 for side in fitted):
            report.dropped += 1
            continue
        new_chosen, new_rejected = fitted
        assert new_chosen is not None and new_rejected is not None
        count_kept(
            report, [new_chosen, new_rejected], truncated=new_chosen is not chosen or new_rejected is not rejected
        )
        pairs.append(PreferencePair(new_chosen, new_rejected))
    require_samples(report, len(pairs))
    return pairs, report


def pair_batch(pairs: Sequence[PreferencePair], pad_id: int) -> PreferenceBatch:
    """Chosen rows first, then rejected rows, padded to the longest; reference log-probs when all pairs have them."""
    ids, labels = pad_rows([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    reference = None
    if all(p.reference is not None for p in pairs):
        values = [p.reference[0] for p in pairs] + [p.reference[1] for p in pairs]  # type: ignore[index]
        reference = torch.tensor(values, dtype=torch.float32)
    return PreferenceBatch(ids, labels, None, reference)


def attach_reference(
    model: torch.nn.Module,
    pairs: Sequence[PreferencePair],
    *,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    progress: bool = False,
) -> None:
    """Compute the reference log-probs of every pair with `model` as it is now (the frozen base), in place."""
    chunks = [pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size)]
    batches = [pair_batch(chunk, pad_id).to(device) for chunk in chunks]
    for chunk, logps in zip(chunks, reference_logps(model, batches, progress=progress), strict=True):
        half = len(chunk)
        for i, pair in enumerate(chunk):
            pair.reference = (float(logps[i]), float(logps[half + i]))


class PreferenceBatches:
    """The loop's batch source for preference pairs: `micro_batch_size` pairs per micro-batch, resumable."""

    def __init__(
        self,
        pairs: Sequence[PreferencePair],
        *,
        micro_batch_size: int,
        grad_accum: int,
        pad_id: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.pairs = pairs
        self.micro_batch_size = micro_batch_size
        self.grad_accum = grad_accum
        self.pad_id = pad_id
        self.order = EpochOrder(len(pairs), seed=seed, rank=rank, world_size=world_size)

    def next_step(self, device: torch.device) -> list[PreferenceBatch]:
        step = []
        for _ in range(self.grad_accum):
            chunk = [self.pairs[self.order.take()] for _ in range(self.micro_batch_size)]
            step.append(pair_batch(chunk, self.pad_id).to(device))
        return step

    def state_dict(self, info: DistInfo) -> dict[str, Any]:
        return gather_states(self.order.state_dict(), info)

    def load_state_dict(self, state: Mapping[str, Any] | None, info: DistInfo) -> None:
        if state:
            self.order.load_state_dict(rank_state(state, info))
