"""The inference engine: continuous batching over a paged KV cache with prefix caching.

Four roles: the block manager (KV blocks, prefix-cache hashes), the scheduler (which sequences run each
step), the runner (batch tensors and the model forward over the paged cache) and the engine (requests in,
outputs out). `AsyncLLMEngine` drives it for the HTTP server; `LLM` is the offline API.
"""

from puyu.engine.async_engine import AsyncLLMEngine, QueueFullError
from puyu.engine.config import EngineConfig
from puyu.engine.engine import LLMEngine
from puyu.engine.llm import LLM, CompletionOutput
from puyu.engine.outputs import EngineStats, RequestOutput, TokenLogprob

__all__ = [
    "LLM",
    "AsyncLLMEngine",
    "CompletionOutput",
    "EngineConfig",
    "EngineStats",
    "LLMEngine",
    "QueueFullError",
    "RequestOutput",
    "TokenLogprob",
]
