"""Tiny models and data files for the fine-tuning tests (no external data needed)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from puyu.configuration import from_dict
from puyu.finetune.config import FinetuneConfig
from puyu.model.init import init_model_folder
from puyu.tokenizer import Tokenizer
from puyu.train.objectives import IGNORE_INDEX

PRESETS = ("internlm2-tiny", "llama-tiny", "qwen2-tiny")
END_TOKENS = {"internlm2-tiny": "<|im_end|>", "llama-tiny": "<|eot_id|>", "qwen2-tiny": "<|im_end|>"}
ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
    },
}


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: tiny models run faster so, and the tests do not fight over a shared machine's cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(folder: Path, preset: str = "internlm2-tiny") -> Path:
    """A random 2-layer model folder of `preset` with its byte-level tokenizer and chat template."""
    return init_model_folder(preset, folder, overrides={"num_layers": 2})


def quiet_config(run_dir: Path, model: Path, data: Path, *, seq_len: int = 128, **settings: Any) -> FinetuneConfig:
    """A fine-tuning config of `model` on `data` in `run_dir`, without progress bars or checkpoints before the end,
    with `settings` (top-level keys) on top."""
    base = {
        "run_dir": str(run_dir),
        "model": str(model),
        "data": {"path": str(data), "seq_len": seq_len},
        "checkpoint_every": 0,
        "peak_flops": 1e12,
        "progress": False,
    }
    return from_dict(FinetuneConfig, {**base, **settings})


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    """One JSON value per line; a str row is written as is (for malformed-line tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def addition_rows() -> list[dict[str, Any]]:
    """'What is A plus B?' for every pair of digits, answered with the sum."""
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {a} plus {b}?"},
                {"role": "assistant", "content": str(a + b)},
            ]
        }
        for a in range(10)
        for b in range(10)
    ]


def preference_rows(count: int = 16) -> list[dict[str, Any]]:
    """Prompts whose chosen answer is upper case and rejected answer lower case (a learnable preference)."""
    words = ["apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "ocean"]
    rows = []
    for i in range(count):
        word = words[i % len(words)] + str(i // len(words))
        rows.append({"prompt": f"Shout {word}", "chosen": word.upper() + "!", "rejected": word + "."})
    return rows


def labelled_runs(tokenizer: Tokenizer, labels: list[int]) -> list[str]:
    """The text of each maximal run of labelled positions (what the model is trained to produce)."""
    runs: list[list[int]] = []
    previous = False
    for label in labels:
        inside = label != IGNORE_INDEX
        if inside and not previous:
            runs.append([])
        if inside:
            runs[-1].append(label)
        previous = inside
    return [tokenizer.decode(run) for run in runs]
