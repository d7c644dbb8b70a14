"""Logits and greedy-generation parity with transformers on tiny random checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from puyu.generation.generate import generate_tokens
from puyu.generation.sampling import SamplingParams
from puyu.model import ModelConfig, load_model, save_model
from puyu.model.init import random_model

transformers = pytest.importorskip("transformers")

SHAPE = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
ROPE_VARIANTS = {
    "plain": dict(max_position_embeddings=128),
    "linear": dict(max_position_embeddings=128, rope_scaling={"type": "linear", "factor": 2.0}),
    # A short trained length so both the prompt and generation run past it and the base keeps growing.
    "dynamic": dict(max_position_embeddings=24, rope_scaling={"type": "dynamic", "factor": 2.0}),
    "llama3": dict(
        max_position_embeddings=256,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    ),
}


def _randomise(model: torch.nn.Module, seed: int) -> None:
    # Larger-than-default weights give peaked distributions, so greedy choices are not near-ties.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3 + (1.0 if param.ndim == 1 else 0.0))


def _hf_model(family: str, kv_heads: int, tied: bool, rope: str, seed: int = 0):
    kwargs = dict(SHAPE, num_key_value_heads=kv_heads, tie_word_embeddings=tied, rope_theta=10000.0)
    kwargs.update(ROPE_VARIANTS[rope])
    if family == "llama":
        config = transformers.LlamaConfig(**kwargs)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Qwen2Config(**kwargs)
        model = transformers.Qwen2ForCausalLM(config)
    _randomise(model, seed)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


def _prompt(length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, SHAPE["vocab_size"], (1, length), generator=torch.Generator().manual_seed(seed))


CASES = [
    ("llama", 2, False, "plain"),
    ("llama", 4, True, "plain"),
    ("llama", 2, False, "linear"),
    ("llama", 1, True, "dynamic"),
    ("llama", 2, False, "llama3"),
    ("qwen2", 2, True, "plain"),
    ("qwen2", 2, False, "dynamic"),
    ("qwen2", 4, True, "linear"),
]


@pytest.mark.parametrize(("family", "kv_heads", "tied", "rope"), CASES)
def test_logits_and_greedy_match_transformers(tmp_path: Path, family: str, kv_heads: int, tied: bool, rope: str):
    hf = _hf_model(family, kv_heads, tied, rope)
    hf.save_pretrained(tmp_path)
    ours = load_model(tmp_path, dtype="float32")
    assert ours.config.family == family
    assert ours.config.tie_word_embeddings == tied

    ids = _prompt(40)
    with torch.no_grad():
        expected = hf(ids).logits
        got = ours(ids)
    assert (got - expected).abs().max().item() <= 1e-4

    prompt = _prompt(12, seed=2)
    with torch.no_grad():
        hf_tokens = hf.generate(prompt, max_new_tokens=32, do_sample=False)[0, prompt.shape[1] :].tolist()
    our_tokens = generate_tokens(ours, prompt[0].tolist(), SamplingParams(max_tokens=32, temperature=0))
    assert our_tokens == hf_tokens


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_internlm2_layout_matches_transformers_llama(tmp_path: Path, kv_heads: int):
    """An InternLM2 folder (fused wqkv) read by puyu gives the logits transformers gives for its Llama conversion."""
    config = ModelConfig.from_name(
        "internlm2-tiny",
        vocab_size=256,
        num_kv_heads=kv_heads,
        max_position_embeddings=24,
        rope_theta=10000.0,
    )
    source = random_model(config, seed=3, std=0.3)
    save_model(source, tmp_path / "internlm2")
    ours = load_model(tmp_path / "internlm2", dtype="float32")

    from puyu.model.convert import convert_checkpoint

    convert_checkpoint(tmp_path / "internlm2", tmp_path / "llama", "llama")
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "llama", dtype=torch.float32).eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0

    ids = _prompt(40)
    with torch.no_grad():
        diff = (ours(ids) - hf(ids).logits).abs().max().item()
    assert diff <= 1e-4

    prompt = _prompt(12, seed=4)
    with torch.no_grad():
        hf_tokens = hf.generate(prompt, max_new_tokens=32, do_sample=False)[0, prompt.shape[1] :].tolist()
    assert generate_tokens(ours, prompt[0].tolist(), SamplingParams(max_tokens=32, temperature=0)) == hf_tokens


def test_cached_decoding_equals_full_forward():
    """Logits of each step with the KV cache equal the full causal forward (dynamic rope off its base)."""
    config = ModelConfig.from_name("internlm2-tiny", vocab_size=256, max_position_embeddings=1024)
    model = random_model(config, seed=5, std=0.3)
    from puyu.model.kv_cache import DenseKVCache

    ids = _prompt(20)
    with torch.no_grad():
        full = model(ids)
        cache = DenseKVCache(config.num_layers, config.num_kv_heads, config.head_dim, max_len=20)
        chunks = [model(ids[:, :8], cache=cache), model(ids[:, 8:9], cache=cache), model(ids[:, 9:], cache=cache)]
    assert (torch.cat(chunks, dim=1) - full).abs().max().item() <= 1e-5
