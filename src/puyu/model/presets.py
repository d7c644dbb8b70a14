"""Named model shapes: the published configurations of real checkpoints, and tiny sizes for tests.

The real presets match the checkpoints' own `config.json`, so `puyu model init --preset internlm2-chat-1.8b`
builds a random model that any loader of the real one also loads.
"""

from __future__ import annotations

from puyu.model.config import ModelConfig, RopeScaling

PRESETS: dict[str, ModelConfig] = {
    "internlm2-chat-1.8b": ModelConfig(
        family="internlm2", vocab_size=92544, hidden_size=2048, intermediate_size=8192, num_layers=24,
        num_heads=16, num_kv_heads=8, max_position_embeddings=32768, rope_theta=1e6,
        rope_scaling=RopeScaling("dynamic", 2.0), rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
        pad_token_id=2,
    ),
    "internlm2.5-7b-chat": ModelConfig(
        family="internlm2", vocab_size=92544, hidden_size=4096, intermediate_size=14336, num_layers=32,
        num_heads=32, num_kv_heads=8, max_position_embeddings=32768, rope_theta=1e6,
        rope_scaling=RopeScaling("dynamic", 2.0), rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
        pad_token_id=2,
    ),
    "internlm2-20b": ModelConfig(
        family="internlm2", vocab_size=92544, hidden_size=6144, intermediate_size=16384, num_layers=48,
        num_heads=48, num_kv_heads=8, max_position_embeddings=32768, rope_theta=1e6,
        rope_scaling=RopeScaling("dynamic", 2.0), rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
        pad_token_id=2,
    ),
    "llama-3-8b": ModelConfig(
        family="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32,
        num_heads=32, num_kv_heads=8, max_position_embeddings=8192, rope_theta=500000.0,
        rms_norm_eps=1e-5, bos_token_id=128000, eos_token_id=128001,
    ),
    "llama-3.1-8b": ModelConfig(
        family="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32,
        num_heads=32, num_kv_heads=8, max_position_embeddings=131072, rope_theta=500000.0,
        rope_scaling=RopeScaling("llama3", 8.0, 1.0, 4.0, 8192), rms_norm_eps=1e-5,
        bos_token_id=128000, eos_token_id=[128001, 128008, 128009],
    ),
    "qwen2-0.5b": ModelConfig(
        family="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864, num_layers=24,
        num_heads=14, num_kv_heads=2, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
        qkv_bias=True, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151643,
    ),
    # Tiny shapes for tests, CI and the quickstart; vocab fits the built-in byte-level tokenizer.
    "internlm2-tiny": ModelConfig(
        family="internlm2", vocab_size=512, hidden_size=64, intermediate_size=176, num_layers=2,
        num_heads=4, num_kv_heads=2, max_position_embeddings=2048, rope_theta=1e6,
        rope_scaling=RopeScaling("dynamic", 2.0), rms_norm_eps=1e-5, torch_dtype="float32",
    ),
    "llama-tiny": ModelConfig(
        family="llama", vocab_size=512, hidden_size=64, intermediate_size=176, num_layers=2,
        num_heads=4, num_kv_heads=2, max_position_embeddings=2048, rope_theta=500000.0,
        rms_norm_eps=1e-5, torch_dtype="float32",
    ),
    "qwen2-tiny": ModelConfig(
        family="qwen2", vocab_size=512, hidden_size=64, intermediate_size=176, num_layers=2,
        num_heads=4, num_kv_heads=2, max_position_embeddings=2048, rope_theta=1e6, rms_norm_eps=1e-6,
        qkv_bias=True, tie_word_embeddings=True, torch_dtype="float32",
    ),
    # Benchmark sizes: ~100M and ~1B parameters in the InternLM2 shape.
    "internlm2-100m": ModelConfig(
        family="internlm2", vocab_size=32000, hidden_size=768, intermediate_size=2048, num_layers=12,
        num_heads=12, num_kv_heads=4, max_position_embeddings=4096, rope_theta=1e6, rms_norm_eps=1e-5,
        torch_dtype="float32",
    ),
    "internlm2-1b": ModelConfig(
        family="internlm2", vocab_size=92544, hidden_size=2048, intermediate_size=5632, num_layers=16,
        num_heads=16, num_kv_heads=8, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-5,
    ),
}  # fmt: skip
