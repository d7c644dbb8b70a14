"""The model core: configuration, the one decoder, KV caches and HF checkpoint IO."""

from puyu.model.checkpoint import load_model, save_model
from puyu.model.config import ModelConfig, RopeScaling
from puyu.model.decoder import CausalLM
from puyu.model.kv_cache import DenseKVCache, KVCache

__all__ = ["CausalLM", "DenseKVCache", "KVCache", "ModelConfig", "RopeScaling", "load_model", "save_model"]
