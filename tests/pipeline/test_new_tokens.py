"""Mean initialisation of the chat tokens a pretrained model never saw."""

from __future__ import annotations

from pathlib import Path

import torch

from puyu.model.checkpoint import load_model, save_model
from puyu.model.init import init_model_folder
from puyu.pipeline.new_tokens import mean_init_tokens, unseen_special_ids
from puyu.tokenizer import Tokenizer


def test_only_the_chat_tokens_move_to_the_trained_rows_statistics(tmp_path: Path) -> None:
    folder = init_model_folder("internlm2-tiny", tmp_path / "m")
    tokenizer = Tokenizer.from_pretrained(folder)
    ids = unseen_special_ids(tokenizer)
    names = {tokenizer.id_to_token(i) for i in ids}
    assert {"<|im_start|>", "<|im_end|>", "<|action_start|>", "<|plugin|>"} <= names
    assert tokenizer.bos_id not in ids and tokenizer.eos_id not in ids

    before = load_model(folder)
    trained = torch.ones(before.config.vocab_size, dtype=torch.bool)
    trained[ids] = False
    with torch.no_grad():  # shift the trained rows away from the untrained ones, as pretraining would
        before.model.embed_tokens.weight[trained] += 1.0
        before.lm_head.weight[trained] -= 1.0
    save_model(before, folder)
    mean_init_tokens(folder, ids, seed=1)
    after = load_model(folder)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        old, new = before.state_dict()[name], after.state_dict()[name]
        other = [i for i in range(old.shape[0]) if i not in ids]
        torch.testing.assert_close(new[other], old[other])
        target = old[other].mean(0)
        assert (new[ids].mean(0) - target).abs().mean() < 0.5 * (old[ids].mean(0) - target).abs().mean()
        assert torch.unique(new[ids], dim=0).shape[0] == len(ids)  # noise keeps them distinguishable
