"""Reference generation: sampling, a dense-KV-cache decode loop, and the text/chat layer over it."""

from puyu.generation.generate import GenerationOutput, TokenStep, generate_tokens, stream_tokens
from puyu.generation.sampling import SamplingParams

__all__ = ["GenerationOutput", "SamplingParams", "TokenStep", "generate_tokens", "stream_tokens"]
