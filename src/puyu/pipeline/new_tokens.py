"""Give the chat tokens a pretrained model never saw sensible embeddings before adapter fine-tuning.

Tokens the pretraining shards never hold (`<|action_start|>`, `<|plugin|>`, ...; the corpus's chat
transcripts do hold `<|im_start|>` and `<|im_end|>`) keep their input embeddings at initialisation and
their output rows are pushed far down by every softmax, so a LoRA adapter (which leaves embeddings and the
output matrix frozen) can hardly learn to emit them. Setting those rows to the mean of the trained rows
plus noise of the rows' spread (Hewitt, 2021, "Initializing new word embeddings for pretrained language
models") starts them at ordinary logits while keeping them distinguishable; SFT then trains those rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from puyu.data.shards import open_split
from puyu.model.checkpoint import load_model, save_model
from puyu.model.decoder import CausalLM
from puyu.tokenizer import Tokenizer


def unseen_special_ids(tokenizer: Tokenizer, seen: set[int] | None = None) -> list[int]:
    """Added tokens other than BOS/EOS/pad that are not in `seen` (the ids pretraining produced)."""
    keep = {tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id} | (seen or set())
    return sorted(i for i in tokenizer.added_tokens.values() if i not in keep)


def token_ids_in(shards_dir: str | Path) -> set[int]:
    """Every token id the training split of a token-shard folder holds."""
    seen: set[int] = set()
    for shard in open_split(shards_dir, "train"):
        seen.update(np.unique(shard.tokens).tolist())
    return seen


def token_matrices(model: CausalLM) -> list[torch.Tensor]:
    """The matrices with a row per token: the input embedding, and the output head unless tied to it."""
    matrices = [model.model.embed_tokens.weight]
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        matrices.append(model.lm_head.weight)
    return matrices


@torch.no_grad()
def mean_init_tokens(model_dir: str | Path, token_ids: list[int], *, seed: int = 0) -> None:
    """Rewrite the embedding and output rows of `token_ids` in the HF folder `model_dir`, in place."""
    if not token_ids:
        return
    model = load_model(model_dir, dtype="float32")
    generator = torch.Generator().manual_seed(seed)
    ids = torch.tensor(token_ids)
    for weight in token_matrices(model):
        trained = torch.ones(weight.shape[0], dtype=torch.bool)
        trained[ids] = False
        mean, std = weight[trained].mean(0), weight[trained].std(0)
        noise = torch.randn(len(token_ids), weight.shape[1], generator=generator)
        weight[ids] = mean + noise * std
    save_model(model, model_dir)
