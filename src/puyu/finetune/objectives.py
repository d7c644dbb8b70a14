"""Fine-tuning objectives on top of the loop's causal-LM loss: SFT, and preference optimisation (DPO and kin).

SFT is `puyu.train.objectives.causal_lm_loss` over labels that mark only the assistant's tokens: the loop
sums token losses and divides by the step's trained tokens. Preference losses work per pair instead: a
`PreferenceBatch` holds each pair's chosen and rejected sequences, counts its pairs as its targets, and
`PreferenceLoss` returns the summed pair loss, so the loop's normalisation yields the mean over pairs.

DPO (Rafailov et al. 2023) with the sigmoid loss and optional label smoothing (conservative DPO), IPO
(Azar et al. 2023), and the reference-free SimPO (Meng et al. 2024) and ORPO (Hong et al. 2024: SFT on the
chosen response plus an odds-ratio term, one stage without a reference model) share the code. The reference
log-probabilities come from the frozen base: for an adapter run, the same model with its adapters switched
off (`lora_disabled`); for a full fine-tune, computed once before training (`reference_logps`) and carried
in the batches, which needs no second copy of the weights in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from puyu.model.attention_mask import document_causal_mask
from puyu.train.objectives import IGNORE_INDEX, Batch, causal_lm_loss

__all__ = [
    "PreferenceBatch",
    "PreferenceLoss",
    "causal_lm_loss",
    "preference_losses",
    "sequence_logps",
]

PreferenceKind = Literal["sigmoid", "ipo", "simpo", "orpo"]
REFERENCE_FREE = ("simpo", "orpo")
Reference = Literal["adapters_off", "precomputed", "none"]


@dataclass
class PreferenceBatch(Batch):
    """Pairs as one batch: rows [0, P) are the chosen sequences, rows [P, 2P) the rejected ones.

    Labels mark the response tokens only. `reference_logps` [2P], when set, are the reference model's
    summed response log-probabilities of the same rows (precomputed).
    """

    reference_logps: torch.Tensor | None = None

    @property
    def num_pairs(self) -> int:
        return self.input_ids.shape[0] // 2

    @property
    def num_targets(self) -> int:
        # The loop normalises by targets: a preference loss is a sum over pairs.
        return self.num_pairs

    def to(self, device: torch.device) -> PreferenceBatch:
        moved = super().to(device)
        reference = self.reference_logps.to(device) if self.reference_logps is not None else None
        return PreferenceBatch(moved.input_ids, moved.labels, moved.position_ids, reference)


def sequence_logps(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each row's labelled tokens [N] (float32), and the number of those tokens [N]."""
    mask = document_causal_mask(batch.position_ids) if batch.position_ids is not None else None
    logits = model(batch.input_ids, positions=batch.position_ids, mask=mask)
    token_nll = F.cross_entropy(
        logits.float().flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    ).view_as(batch.labels)
    return -token_nll.sum(dim=-1), (batch.labels != IGNORE_INDEX).sum(dim=-1)


def preference_losses(
    kind: PreferenceKind,
    policy: torch.Tensor,
    reference: torch.Tensor | None,
    lengths: torch.Tensor,
    *,
    beta: float,
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses and the implicit rewards of the chosen and rejected responses.

    Args:
        kind: "sigmoid" (DPO), "ipo", "simpo" or "orpo".
        policy: [2P] summed response log-probs, chosen rows first.
        reference: [2P] the reference model's, or None (SimPO and ORPO need none).
        lengths: [2P] response tokens per row (SimPO and ORPO average per token).
        beta: the inverse temperature β (ORPO: the weight λ of the odds-ratio term).
        label_smoothing: DPO only: the assumed share of flipped preference labels (0 = plain DPO).
        simpo_gamma: SimPO's target reward margin γ.

    Returns:
        (losses [P], chosen rewards [P], rejected rewards [P]).
    """
    pairs = policy.shape[0] // 2
    if kind == "orpo":
        average = policy.float() / lengths.clamp(min=1)
        chosen, rejected = average[:pairs], average[pairs:]
        # log odds(y) = log p − log(1 − p) with p the mean per-token probability; log(1 − p) computed stably.
        log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
        losses = -chosen - beta * F.logsigmoid(log_odds)  # the chosen response's NLL (per token) + λ·L_OR
        return losses, beta * chosen.detach(), beta * rejected.detach()
    if kind == "simpo":
        average = policy / lengths.clamp(min=1)
        chosen, rejected = beta * average[:pairs], beta * average[pairs:]
        return -F.logsigmoid(chosen - rejected - simpo_gamma), chosen.detach(), rejected.detach()
    if reference is None:
        raise ValueError(f"the {kind} loss needs reference log-probabilities")
    ratios = policy - reference
    chosen_ratio, rejected_ratio = ratios[:pairs], ratios[pairs:]
    diff = chosen_ratio - rejected_ratio
    if kind == "ipo":
        losses = (diff - 1.0 / (2.0 * beta)) ** 2
    else:
        losses = -F.logsigmoid(beta * diff) * (1.0 - label_smoothing) - F.logsigmoid(-beta * diff) * label_smoothing
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(x)) for x < 0 without cancellation (Mächler 2012: switch at −ln 2)."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


class PreferenceLoss:
    """The loop's loss function for preference pairs; also reports rewards, margin and accuracy per step.

    Args:
        kind: "sigmoid" (DPO), "ipo", "simpo" or "orpo".
        beta: β (DPO: 0.1 is usual; SimPO: around 2; ORPO: λ, 0.1 is usual).
        reference: where reference log-probs come from: "adapters_off" (the policy with its LoRA adapters
            switched off, computed each step), "precomputed" (carried in the batch), "none" (SimPO).
        label_smoothing: DPO's label smoothing.
        simpo_gamma: SimPO's margin.
    """

    def __init__(
        self,
        kind: PreferenceKind = "sigmoid",
        *,
        beta: float = 0.1,
        reference: Reference = "adapters_off",
        label_smoothing: float = 0.0,
        simpo_gamma: float = 0.5,
    ) -> None:
        if kind not in REFERENCE_FREE and reference == "none":
            raise ValueError(f"the {kind} loss needs a reference model")
        self.kind = kind
        self.beta = beta
        self.reference = reference
        self.label_smoothing = label_smoothing
        self.simpo_gamma = simpo_gamma
        self._sums: dict[str, float] = {}

    def __call__(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        if not isinstance(batch, PreferenceBatch):
            raise TypeError(f"a preference loss needs a PreferenceBatch, got {type(batch).__name__}")
        policy, lengths = sequence_logps(model, batch)
        reference = self._reference(model, batch)
        losses, chosen, rejected = preference_losses(
            self.kind,
            policy,
            reference,
            lengths,
            beta=self.beta,
            label_smoothing=self.label_smoothing,
            simpo_gamma=self.simpo_gamma,
        )
        pairs = batch.num_pairs
        self._add("pairs", pairs)
        self._add("rewards_chosen", float(chosen.sum()))
        self._add("rewards_rejected", float(rejected.sum()))
        self._add("accuracy", float((chosen > rejected).sum()))
        self._add("logps_chosen", float(policy[:pairs].detach().sum()))
        self._add("logps_rejected", float(policy[pairs:].detach().sum()))
        return losses.sum()

    def _reference(self, model: torch.nn.Module, batch: PreferenceBatch) -> torch.Tensor | None:
        if self.reference == "none":
            return None
        if self.reference == "precomputed":
            if batch.reference_logps is None:
                raise ValueError("reference='precomputed' but the batch carries no reference log-probs")
            return batch.reference_logps
        with torch.no_grad(), adapters_off(model):
            return sequence_logps(model, batch)[0]

    def _add(self, key: str, value: float) -> None:
        self._sums[key] = self._sums.get(key, 0.0) + value

    def pop_metrics(self) -> dict[str, float]:
        """Means over the pairs seen since the last call: rewards, their margin, accuracy, log-probs."""
        sums, self._sums = self._sums, {}
        pairs = sums.pop("pairs", 0.0)
        if not pairs:
            return {}
        means = {key: value / pairs for key, value in sums.items()}
        means["rewards_margin"] = means["rewards_chosen"] - means["rewards_rejected"]
        return means


@contextlib.contextmanager
def adapters_off(model: torch.nn.Module) -> Iterator[None]:
    """The base model's forward inside (LoRA adapters bypassed)."""
    from puyu.finetune.lora import lora_disabled

    with lora_disabled(model):
        yield


@torch.no_grad()
def reference_logps(
    model: torch.nn.Module, batches: Sequence[PreferenceBatch], *, progress: bool = False
) -> list[torch.Tensor]:
    """Each batch's summed response log-probs under `model` as it is now (eval mode), on the CPU."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    try:
        return [
            sequence_logps(model, batch)[0].cpu() for batch in tqdm(batches, desc="reference", disable=not progress)
        ]
    finally:
        model.train(was_training)
