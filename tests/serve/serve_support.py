"""Helpers for the server tests: a tiny model folder, a live server on a free loopback port, and the
engine with two test hooks (slow steps, scripted replies)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from puyu.engine.config import EngineConfig
from puyu.engine.engine import LLMEngine
from puyu.engine.outputs import RequestOutput
from puyu.generation.sampling import SamplingParams
from puyu.model.init import init_model_folder
from server_support import free_port, live_server

__all__ = ["free_port", "live_server"]  # re-exported: the server tests import them from here

MODEL_NAME = "tiny"
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "max_position_embeddings": 1024,
    "vocab_size": 265,  # = the tokenizer: logprobs are normalised over the same tokens everywhere
}


def make_model_folder(out: Path, **overrides: Any) -> Path:
    return init_model_folder("internlm2-tiny", out, overrides={**TINY, **overrides}, dtype="float32")


# ---------------------------------------------------------------------------------------------- engines


class ForceTokens:
    """A logits processor that makes the model write fixed token ids, then leaves it alone."""

    def __init__(self, token_ids: list[int]) -> None:
        self.token_ids = token_ids

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        position = len(output_ids)
        if position >= len(self.token_ids):
            return logits
        forced = torch.full_like(logits, float("-inf"))
        forced[self.token_ids[position]] = 0.0
        return forced


Script = Callable[[str], str | None]


def build_engine(folder: Path, *, delay: float = 0.0, script: Script | None = None, **config: Any) -> LLMEngine:
    """The real engine over `folder` (small KV pool, CPU), whose steps take at least `delay` seconds and
    whose replies follow `script(prompt text)` (a reply text, ended with the chat end token) where it
    returns one."""

    class TestEngine(LLMEngine):
        def step(self) -> list[RequestOutput]:
            if delay:
                time.sleep(delay)
            return super().step()

        def add_request(
            self, request_id: str, prompt_ids: list[int], params: SamplingParams, *args: Any, **kwargs: Any
        ) -> None:
            reply = script(self.tokenizer.decode(prompt_ids)) if script is not None else None
            if reply is not None:
                ids = self.tokenizer.encode(reply, add_special_tokens=False) + sorted(self.chat_stop_ids)[:1]
                params = dataclasses.replace(params, logits_processors=[*params.logits_processors, ForceTokens(ids)])
            super().add_request(request_id, prompt_ids, params, *args, **kwargs)

    settings = {"num_blocks": 256, "block_size": 16, "max_num_seqs": 8, "device": "cpu", "dtype": "float32", **config}
    return TestEngine.from_pretrained(folder, EngineConfig(**settings))


def engine_factory(folder: Path, **kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        from puyu.engine.async_engine import AsyncLLMEngine

        max_queue = kwargs.pop("max_queue", None)
        return AsyncLLMEngine(build_engine(folder, **kwargs), max_queue=max_queue)

    return build
