"""Attention masks for packed sequences: a token attends only to earlier tokens of its own document."""

from __future__ import annotations

import torch


def document_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Per-token document index [B, T]: a new document starts wherever the position restarts at 0."""
    return (position_ids == 0).cumsum(dim=-1)


def document_causal_mask(position_ids: torch.Tensor) -> torch.Tensor:
    """Bool mask [B, 1, T, T] (True = attend): causal and block-diagonal over documents.

    Args:
        position_ids: [B, T] positions that restart at 0 at every document start (as the token-shard dataset
            yields them). A row without any 0 is one document continuing from the previous window.
    """
    docs = document_ids(position_ids)
    t = position_ids.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool, device=position_ids.device).tril()
    return ((docs[:, :, None] == docs[:, None, :]) & causal)[:, None]
