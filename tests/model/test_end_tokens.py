"""Folders written from a chat model name its turn-end token, and plain completions stop there."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from puyu.model import load_model, save_model
from puyu.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")


def run_puyu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "puyu", *args], capture_output=True, text=True, timeout=300)


def script_model(folder: Path, chain: list[str]) -> None:
    """Make the model's greedy continuation follow `chain` (token texts) whatever came before it.

    Attention and MLP outputs are zeroed, so the last hidden state is the current token's embedding;
    each token gets its own one-hot embedding and the output head maps it to the next one in `chain`.
    """
    tokenizer = Tokenizer.from_pretrained(folder)
    ids = [tokenizer.token_to_id(text) for text in chain]
    assert None not in ids
    model = load_model(folder, dtype="float32")
    width = model.config.hidden_size
    assert len({i % width for i in ids}) == len(ids)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("wo.weight", "o_proj.weight", "down_proj.weight", "w2.weight")):
                param.zero_()
        embed = model.model.embed_tokens.weight
        embed.zero_()
        embed[torch.arange(embed.shape[0]), torch.arange(embed.shape[0]) % width] = 1.0
        head = model.lm_head.weight
        head.zero_()
        for current, following in itertools.pairwise(ids):
            head[following, current % width] = 10.0
    save_model(model, folder)


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("end") / "model"
    result = run_puyu("model", "init", "--preset", "internlm2-tiny", "--out", str(folder))
    assert result.returncode == 0, result.stderr
    return folder


def test_generation_config_lists_the_turn_end_like_released_chat_folders(chat_folder: Path):
    im_end = Tokenizer.from_pretrained(chat_folder).token_to_id("<|im_end|>")
    eos = json.loads((chat_folder / "config.json").read_text())["eos_token_id"]
    loaded = transformers.GenerationConfig.from_pretrained(chat_folder)
    assert loaded.eos_token_id == [eos, im_end]


def test_plain_completion_stops_at_the_turn_end(chat_folder: Path, tmp_path: Path):
    folder = tmp_path / "scripted"
    result = run_puyu("convert", str(chat_folder), "--to", "internlm2", "--out", str(folder))
    assert result.returncode == 0, result.stderr
    script_model(folder, ["Z", "a", "r", "<|im_end|>", "<|im_start|>", "x"])
    result = run_puyu("generate", str(folder), "--prompt", "Z", "--temperature", "0", "--max-tokens", "20")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ar\n"

    from puyu import LLM, SamplingParams

    llm = LLM(folder, num_blocks=16)
    out = llm.generate(["Z"], SamplingParams(max_tokens=20, temperature=0))[0]
    assert out.text == "ar" and out.finish_reason == "stop"
