"""What a training step optimises: batches with labels, and the summed token loss.

Losses are returned as *sums* over target tokens. The loop divides once, by the number of target tokens in
the whole optimizer step across micro-batches and processes (`loss_scale`), so every token weighs the same
however the batch is split; this is the one place loss normalisation happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from puyu.model.attention_mask import document_causal_mask

IGNORE_INDEX = -100


@dataclass
class Batch:
    """Token ids, labels (IGNORE_INDEX = no loss) and, for packed sequences, per-document positions [B, T]."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        positions = self.position_ids.to(device) if self.position_ids is not None else None
        return Batch(self.input_ids.to(device), self.labels.to(device), positions)

    @property
    def num_targets(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


def lm_batch(windows: dict[str, Any], document_mask: bool) -> Batch:
    """A language-modelling batch from collated token windows ([B, T + 1] ids and positions).

    Args:
        windows: `puyu.data.dataset.collate_windows` output.
        document_mask: keep documents apart: positions restart per document, attention stays inside each
            document, and a document's first token is not a target (nothing before it in its document predicts it).
    """
    ids = windows["input_ids"]
    inputs, labels = ids[:, :-1], ids[:, 1:].clone()
    if not document_mask:
        return Batch(inputs, labels)
    positions = windows["position_ids"]
    labels[positions[:, 1:] == 0] = IGNORE_INDEX
    return Batch(inputs, labels, positions[:, :-1])


def causal_lm_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Summed next-token cross-entropy over the batch's targets (float32)."""
    mask = document_causal_mask(batch.position_ids) if batch.position_ids is not None else None
    logits = model(batch.input_ids, positions=batch.position_ids, mask=mask)
    return F.cross_entropy(
        logits.float().flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def loss_scale(global_targets: int, world_size: int) -> float:
    """Factor turning a summed loss into this process's share of the step's mean loss.

    Gradient all-reduce (DDP, FSDP) averages over processes, hence the `world_size`.
    """
    return world_size / max(global_targets, 1)
