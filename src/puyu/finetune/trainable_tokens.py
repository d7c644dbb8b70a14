"""Trainable token rows: new values for chosen rows of the embedding or output matrix, as PEFT's
`trainable_token_indices` trains them beside LoRA adapters.

Tokens a base model never saw in pretraining (chat markers added for fine-tuning) have rows that a LoRA
adapter cannot change: adapters leave the embedding and output matrices frozen. Training just those rows
costs a few thousand parameters and lets the fine-tuned model read and write the new tokens. The rows live
in `trainable_tokens_delta` [tokens, hidden], which (despite PEFT's name) holds the rows' full new values,
starting at the base's; the base matrix stays frozen and untouched until `merge_trainable_tokens`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from puyu.errors import PuyuError

# The matrices whose rows can be trained, by puyu's module names.
TOKEN_MATRICES = ("model.embed_tokens", "lm_head")


class TrainableTokens(nn.Module):
    """An embedding (or output projection) whose rows `token_ids` come from a trainable tensor.

    Args:
        base_layer: the frozen `nn.Embedding`, or the `nn.Linear` output head.
        token_ids: the rows to train.
        delta: share this parameter instead of making one (an output head tied to the embedding).
    """

    def __init__(self, base_layer: nn.Module, token_ids: list[int], delta: nn.Parameter | None = None) -> None:
        super().__init__()
        rows = base_layer.weight.shape[0]
        bad = [i for i in token_ids if not 0 <= i < rows]
        if bad:
            raise PuyuError(f"trainable token ids {bad[:4]} are outside the vocabulary of {rows} rows")
        if len(set(token_ids)) != len(token_ids):
            raise PuyuError("trainable token ids repeat an id")
        self.base_layer = base_layer
        self.enabled = True
        self.register_buffer("token_ids", torch.tensor(token_ids, dtype=torch.long, device=base_layer.weight.device))
        if delta is None:
            # float32 like the LoRA weights: small updates to half-precision rows would round away.
            delta = nn.Parameter(base_layer.weight.detach()[self.token_ids].float().clone())
        self.trainable_tokens_delta = delta

    @property
    def is_embedding(self) -> bool:
        return isinstance(self.base_layer, nn.Embedding)

    @property
    def weight(self) -> torch.Tensor:
        """The matrix with the trained rows in place (a copy; the forward pass never builds it)."""
        base = self.base_layer.weight
        return base.index_copy(0, self.token_ids, self.trainable_tokens_delta.to(base.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if not self.enabled:
            return out
        rows = self.trainable_tokens_delta.to(out.dtype)
        if self.is_embedding:
            # Positions holding a trained token take its row: O(tokens), never a copy of the whole matrix.
            hit = x.unsqueeze(-1) == self.token_ids
            found = hit.any(-1, keepdim=True)
            picked = rows[hit.float().argmax(-1)]
            return torch.where(found, picked, out)
        return out.index_copy(-1, self.token_ids, F.linear(x.to(rows.dtype), rows))

    def extra_repr(self) -> str:
        return f"tokens={self.token_ids.numel()}"


def normalize_token_indices(indices: list[int] | dict[str, list[int]] | None) -> dict[str, list[int]]:
    """PEFT's `trainable_token_indices` (a list means the embedding) → token ids per puyu matrix name.

    The InternLM2 checkpoint names (`tok_embeddings`, `output`) and Llama's (`embed_tokens`, `lm_head`) are
    both accepted.
    """
    if not indices:
        return {}
    if isinstance(indices, list):
        indices = {"embed_tokens": indices}
    names = {"embed_tokens": TOKEN_MATRICES[0], "tok_embeddings": TOKEN_MATRICES[0]}
    names |= {"lm_head": TOKEN_MATRICES[1], "output": TOKEN_MATRICES[1]}
    out: dict[str, list[int]] = {}
    for key, ids in indices.items():
        name = names.get(key.rpartition(".")[2])
        if name is None:
            raise PuyuError(f"trainable_token_indices: unknown matrix {key!r} (known: {', '.join(names)})")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise PuyuError(f"trainable_token_indices[{key!r}]: expected a list of token ids, got {ids!r}")
        out[name] = sorted(set(out.get(name, []) + ids))
    return out


def apply_trainable_tokens(model: nn.Module, indices: dict[str, list[int]]) -> None:
    """Wrap the named matrices of a `CausalLM` in `TrainableTokens`, in place.

    With tied embeddings the output head reads the embedding's rows, so one trained tensor serves both (as
    in PEFT); naming the head separately is refused there.
    """
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    if tied and TOKEN_MATRICES[1] in indices:
        raise PuyuError("trainable_token_indices: the output head is tied to the embedding; name the embedding only")
    for name in TOKEN_MATRICES:
        if name not in indices:
            continue
        module = model.get_submodule(name)
        if isinstance(module, TrainableTokens):
            raise PuyuError(f"{name} already has trainable token rows (merge them first)")
        _replace(model, name, TrainableTokens(module, indices[name]))
    if tied and TOKEN_MATRICES[0] in indices:
        rows = model.model.embed_tokens.trainable_tokens_delta
        _replace(model, TOKEN_MATRICES[1], TrainableTokens(model.lm_head, indices[TOKEN_MATRICES[0]], rows))


def token_modules(model: nn.Module) -> Iterator[tuple[str, TrainableTokens]]:
    for name, module in model.named_modules():
        if isinstance(module, TrainableTokens):
            yield name, module


@torch.no_grad()
def merge_trainable_tokens(model: nn.Module) -> None:
    """Write the trained rows into the base matrices and unwrap them, in place."""
    for name, module in list(token_modules(model)):
        base = module.base_layer
        base.weight.index_copy_(0, module.token_ids, module.trainable_tokens_delta.to(base.weight.dtype))
        _replace(model, name, base)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)
