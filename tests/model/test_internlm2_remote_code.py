"""InternLM2-layout folders open in transformers with `trust_remote_code=True` and match puyu's logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from puyu.generation.generate import generate_tokens
from puyu.generation.sampling import SamplingParams
from puyu.model import ModelConfig, load_model, save_model
from puyu.model.init import random_model

transformers = pytest.importorskip("transformers")

ROPES = {
    "plain": None,
    "linear": {"type": "linear", "factor": 2.0},
    # A short trained length so the prompt and the reply run past it and the base keeps growing.
    "dynamic": {"type": "dynamic", "factor": 2.0},
}


def _folder(tmp_path: Path, rope: str, kv_heads: int = 2) -> Path:
    config = ModelConfig(
        family="internlm2",
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_layers=2,
        num_heads=4,
        num_kv_heads=kv_heads,
        max_position_embeddings=24 if rope == "dynamic" else 128,
        rope_scaling=ROPES[rope],
        torch_dtype="float32",
    )
    model = random_model(config, seed=3)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # larger weights: peaked distributions, so greedy choices are not near-ties
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3 + (1.0 if param.ndim == 1 else 0.0))
    return save_model(model, tmp_path / f"internlm2-{rope}")


@pytest.mark.parametrize("rope", list(ROPES))
def test_folder_opens_in_transformers_with_matching_logits_and_greedy_output(tmp_path: Path, rope: str):
    folder = _folder(tmp_path, rope)
    assert (folder / "modeling_internlm2.py").is_file() and (folder / "configuration_internlm2.py").is_file()
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32)
    assert type(hf).__name__ == "InternLM2ForCausalLM"
    ours = load_model(folder, dtype="float32")
    prompt = torch.randint(3, 128, (1, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(prompt).logits
        mine = ours(prompt)
    torch.testing.assert_close(theirs, mine.float(), rtol=1e-4, atol=1e-4)
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    out = hf.generate(prompt, max_new_tokens=12, do_sample=False, attention_mask=torch.ones_like(prompt))
    expected = generate_tokens(ours, prompt[0].tolist(), SamplingParams(max_tokens=12, temperature=0))
    assert out[0, prompt.shape[1] :].tolist() == expected


def test_left_padded_batch_matches_single_rows(tmp_path: Path):
    folder = _folder(tmp_path, "plain")
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32)
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    short, long = [5, 6, 7], [9, 8, 7, 6, 5, 4]
    batch = torch.tensor([[0, 0, 0, *short], long])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [1] * 6])
    together = hf.generate(batch, attention_mask=mask, max_new_tokens=6, do_sample=False)[:, 6:]
    for row, ids in enumerate((short, long)):
        alone = hf.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False)[0, len(ids) :]
        assert together[row].tolist() == alone.tolist()
