"""Packed sequences: with the document mask, each document sees only itself, as if run alone."""

from __future__ import annotations

import torch

from puyu.model import ModelConfig
from puyu.model.attention_mask import document_causal_mask, document_ids
from puyu.model.init import random_model
from puyu.train.objectives import IGNORE_INDEX, causal_lm_loss, lm_batch


def _model():
    return random_model(ModelConfig.from_name("qwen2-tiny", vocab_size=64), seed=0, std=0.3)


def test_mask_is_causal_and_block_diagonal():
    positions = torch.tensor([[0, 1, 2, 0, 1]])
    assert document_ids(positions).tolist() == [[1, 1, 1, 2, 2]]
    mask = document_causal_mask(positions)[0, 0].int().tolist()
    assert mask == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 0, 1, 1],
    ]


def test_packed_documents_give_the_logits_of_separate_runs():
    model = _model()
    lengths = [5, 9, 3]
    docs = [torch.randint(3, 64, (1, n), generator=torch.Generator().manual_seed(n)) for n in lengths]
    packed = torch.cat(docs, dim=1)
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    with torch.no_grad():
        together = model(packed, positions=positions, mask=document_causal_mask(positions))
        apart = torch.cat([model(doc) for doc in docs], dim=1)
        unmasked = model(packed)
    assert (together - apart).abs().max().item() < 1e-5
    assert (unmasked - apart).abs().max().item() > 1e-3  # without the mask, later documents see earlier ones


def test_packed_loss_equals_the_sum_of_separate_losses():
    model = _model()
    lengths = [6, 10]
    docs = [torch.randint(3, 64, (n,), generator=torch.Generator().manual_seed(10 + n)) for n in lengths]
    ids = torch.cat(docs)[None]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    batch = lm_batch({"input_ids": ids, "position_ids": positions}, document_mask=True)
    # the first token of the second document is not predicted from the first document
    assert batch.labels[0, lengths[0] - 1].item() == IGNORE_INDEX
    with torch.no_grad():
        packed = causal_lm_loss(model, batch)
        separate = sum(
            causal_lm_loss(model, lm_batch({"input_ids": d[None], "position_ids": torch.arange(len(d))[None]}, True))
            for d in docs
        )
    assert torch.allclose(packed, separate, atol=1e-4)
    assert batch.num_targets == sum(n - 1 for n in lengths)
