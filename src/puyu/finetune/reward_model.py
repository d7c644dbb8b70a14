"""Reward models: the decoder with a scalar head, trained Bradley–Terry on preference pairs (`--method rm`).

The score of a sequence is the head applied to the final-norm hidden state of its last token. The saved folder is
what transformers opens as `LlamaForSequenceClassification` / `Qwen2ForSequenceClassification` (num_labels 1, the
head named `score`): an InternLM2 model is written in the Llama layout, for which transformers has a class.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from puyu.errors import PuyuError
from puyu.finetune.objectives import PreferenceBatch
from puyu.io import atomic_path, atomic_write_text
from puyu.model.config import ARCHITECTURE_OF, ModelConfig
from puyu.model.decoder import CausalLM, hidden_states
from puyu.model.weight_names import from_internal
from puyu.train.objectives import IGNORE_INDEX, Batch

SCORE_ARCHITECTURES = {"llama": "LlamaForSequenceClassification", "qwen2": "Qwen2ForSequenceClassification"}
SAFETENSORS = "model.safetensors"


class RewardModel(nn.Module):
    """A `CausalLM`'s decoder with a linear head to one scalar.

    Args:
        lm: the language model whose decoder is reused (its output matrix is not used, and frozen).
    """

    def __init__(self, lm: CausalLM) -> None:
        super().__init__()
        self.lm = lm
        self.score = nn.Linear(lm.config.hidden_size, 1, bias=False, device=lm.device, dtype=lm.dtype)
        nn.init.normal_(self.score.weight, std=lm.config.hidden_size**-0.5)
        lm.lm_head.weight.requires_grad_(lm.config.tie_word_embeddings)  # tied: the embedding still trains

    @property
    def config(self) -> ModelConfig:
        return self.lm.config

    @property
    def activation_checkpointing(self) -> bool:
        return self.lm.activation_checkpointing

    @activation_checkpointing.setter
    def activation_checkpointing(self, value: bool) -> None:
        self.lm.activation_checkpointing = value

    def forward(self, input_ids: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
        """Scores [B] of right-padded rows [B, T], read at each row's `last_index` [B]."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand(input_ids.shape[0], -1)
        hidden = hidden_states(self.lm, input_ids, positions, None)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        return self.score(hidden[rows, last_index]).squeeze(-1).float()


def whole_rows(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows with their last trained token appended (labels predict the next token, so the inputs stop one
    short), and the index of that token in each row: where a reward model reads its score."""
    trained = batch.labels != IGNORE_INDEX
    width = batch.labels.shape[1]
    last = torch.where(trained, torch.arange(width, device=trained.device), -1).max(dim=1).values
    if bool((last < 0).any()):
        raise PuyuError("a preference row has no response tokens to score")
    ids = torch.cat([batch.input_ids, batch.input_ids[:, -1:]], dim=1)
    rows = torch.arange(ids.shape[0], device=ids.device)
    ids[rows, last + 1] = batch.labels[rows, last]
    return ids, last + 1


class RewardLoss:
    """Bradley–Terry: −log σ(r_chosen − r_rejected), summed over pairs; logs accuracy and margin per step."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}

    def __call__(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        if not isinstance(batch, PreferenceBatch):
            raise TypeError(f"a reward-model loss needs a PreferenceBatch, got {type(batch).__name__}")
        ids, last = whole_rows(batch)
        scores = model(ids, last)
        pairs = batch.num_pairs
        chosen, rejected = scores[:pairs], scores[pairs:]
        for key, value in (
            ("pairs", pairs),
            ("accuracy", float((chosen > rejected).sum())),
            ("margin", float((chosen - rejected).detach().sum())),
        ):
            self._sums[key] = self._sums.get(key, 0.0) + value
        return -F.logsigmoid(chosen - rejected).sum()

    def pop_metrics(self) -> dict[str, float]:
        sums, self._sums = self._sums, {}
        pairs = sums.pop("pairs", 0.0)
        return {key: value / pairs for key, value in sums.items()} if pairs else {}


@torch.no_grad()
def pairwise_accuracy(model: RewardModel, batches: list[PreferenceBatch]) -> float:
    """Share of pairs whose chosen response scores higher."""
    right = total = 0
    model.eval()
    for batch in batches:
        ids, last = whole_rows(batch)
        scores = model(ids, last)
        pairs = batch.num_pairs
        right += int((scores[:pairs] > scores[pairs:]).sum())
        total += pairs
    return right / max(total, 1)


def save_reward_model(model: RewardModel, path: str | os.PathLike[str], pad_token_id: int) -> Path:
    """An HF folder transformers opens as `*ForSequenceClassification` (float32 weights, one shard)."""
    config = model.config
    family = "llama" if config.family == "internlm2" else config.family
    state = {name: p.detach() for name, p in model.lm.state_dict().items()}
    tensors = {
        name: tensor.to("cpu", torch.float32).contiguous()
        for name, tensor in from_internal(state, config, family)
        if name not in ("lm_head.weight", "output.weight")
    }
    tensors["score.weight"] = model.score.weight.detach().to("cpu", torch.float32).contiguous()
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / SAFETENSORS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    hf = config.replace(torch_dtype="float32").to_hf(family)
    hf.update(
        architectures=[SCORE_ARCHITECTURES[family]],
        num_labels=1,
        id2label={"0": "LABEL_0"},
        label2id={"LABEL_0": 0},
        pad_token_id=pad_token_id,
    )
    atomic_write_text(folder / "config.json", json.dumps(hf, indent=2) + "\n")
    return folder


def load_reward_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> RewardModel:
    """A folder written by `save_reward_model` (or any Llama/Qwen2 `*ForSequenceClassification` with one label)."""
    folder = Path(path)
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PuyuError(f"{folder}: not a reward-model folder ({exc})") from None
    archs = raw.get("architectures") or []
    family = next((f for f, arch in SCORE_ARCHITECTURES.items() if arch in archs), None)
    if family is None or int(raw.get("num_labels", len(raw.get("id2label") or {}) or 1)) != 1:
        raise PuyuError(f"{folder}: not a one-label sequence-classification model (architectures {archs})")
    config = ModelConfig.from_hf({**raw, "architectures": [ARCHITECTURE_OF[family]]}, str(folder / "config.json"))
    lm = CausalLM(config.replace(tie_word_embeddings=False)).float()
    tensors = load_file(str(folder / SAFETENSORS))
    score = tensors.pop("score.weight", None)
    if score is None:
        raise PuyuError(f"{folder}: no score.weight")
    missing, unexpected = lm.load_state_dict(tensors, strict=False)
    if unexpected or [name for name in missing if name != "lm_head.weight" and not name.startswith("rotary.")]:
        raise PuyuError(f"{folder}: tensors do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model = RewardModel(lm)
    model.score.weight.data.copy_(score)
    return model.to(device).eval()
