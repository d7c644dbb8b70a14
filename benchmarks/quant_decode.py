"""Weight-only quantization benchmark: memory, single-stream decode speed and perplexity of fp32 vs int8 vs int4.

What is compared: one random InternLM2-shaped model (hidden 1024, 16 layers, 16 heads / 8 KV heads,
intermediate 2816, vocab 32000: ~254M parameters, fp32) and its `puyu quantize` folders — int8
(per-channel; int8 output head), int8 with an fp32 head (to price the head's quantization), and int4
(AWQ GEMM layout, group 128, round-to-nearest; int8 head) — each loaded by `puyu.model.load_model`, the
loader every puyu command uses.

Figures:
* weight memory: bytes of all parameters and buffers in memory, and the bytes a decode step reads (every
  linear layer and the output head; the embedding contributes one row and is left out);
* decode: greedy, a fixed random 32-token prompt + 128 new tokens (`ignore_eos`) through
  `puyu.generation.generate.generate_tokens` (with `--engine`, also through `puyu.LLM`), new tokens / wall
  time of the whole call; one warm-up, then repetitions alternating the variants; medians;
* perplexity on real text (tinyshakespeare, byte-level tokens, 4 windows of 256) — for a random model only a
  proxy of quantization damage; `--trained DIR` adds a trained model's perplexity change;
* a 4096×4096 matrix-vector product: fp32 F.linear vs puyu's int8 / int4 kernels vs torch's
  `_weight_int8pack_mm`, in GB/s of weight bytes read.

    flock /tmp/puyu-heavy.lock .venv/bin/python benchmarks/quant_decode.py --json runs/bench/quant_decode.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from machine import machine_info

SHAPE = {"hidden_size": 1024, "intermediate_size": 2816, "num_layers": 16, "num_heads": 16, "num_kv_heads": 8}
VARIANTS = ("fp32", "int8", "int8-fp32-head", "int4")
SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare" / "input.txt"


def ensure_folders(workdir: Path, seed: int) -> dict[str, Path]:
    """The fp32 folder and its quantized copies, written once and reused while their stamps match."""
    from puyu.model.init import init_model_folder
    from puyu.quant.quantize import quantize_folder

    fp32 = workdir / f"quant-internlm2-250m-fp32-seed{seed}"
    want = {"shape": SHAPE, "seed": seed, "preset": "internlm2-100m"}
    stamp = fp32 / "bench_stamp.json"
    fresh = not (stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == want)
    if fresh:
        print(f"writing a random model to {fp32} ...", flush=True)
        init_model_folder("internlm2-100m", fp32, overrides=SHAPE, dtype="float32", seed=seed)
        stamp.write_text(json.dumps(want) + "\n", encoding="utf-8")
    folders = {"fp32": fp32}
    recipes = {"int8": ("int8", True), "int8-fp32-head": ("int8", False), "int4": ("int4", True)}
    for name, (method, head) in recipes.items():
        folder = workdir / f"{fp32.name}-{name}"
        if fresh or not (folder / "config.json").is_file():
            print(f"quantizing {name} ...", flush=True)
            start = time.perf_counter()
            quantize_folder(fp32, folder, method=method, group_size=128, lm_head=head)
            print(f"  {time.perf_counter() - start:.1f} s", flush=True)
        folders[name] = folder
    return folders


def memory(model: torch.nn.Module) -> dict[str, int]:
    """Resident bytes of all weights, and the bytes one decode step streams (linear layers + head)."""
    from puyu.quant.weight_only import QuantLinear

    total = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    per_token = 0
    for module in model.modules():
        if isinstance(module, QuantLinear):
            per_token += module.weight_bytes()
        elif isinstance(module, torch.nn.Linear):
            per_token += module.weight.numel() * module.weight.element_size()
    return {"total_bytes": total, "decode_bytes_per_token": per_token}


def perplexity(model: torch.nn.Module, windows: torch.Tensor) -> float:
    with torch.inference_mode():
        logits = model(windows)
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), windows[:, 1:].flatten())
    return math.exp(loss.item())


def text_windows(folder: Path, text_file: Path = SHAKESPEARE, count: int = 4, length: int = 256) -> torch.Tensor | None:
    """`count` windows of `length` tokens of real text (.txt, or .jsonl with "text"), in the folder's tokenizer."""
    if not text_file.is_file():
        return None
    from puyu.quant.quantize import read_calibration_texts
    from puyu.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_pretrained(folder)
    text = "\n".join(read_calibration_texts(text_file))[: count * length * 8]
    ids = tokenizer.encode(text, add_special_tokens=False)
    return torch.tensor(ids[: count * length]).reshape(count, length)


def time_calls(runners: dict[str, Callable[[], list[int]]], repeats: int) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run()  # warm-up
    for rep in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
        print(f"[{rep + 1}/{repeats}] " + "  ".join(f"{n} {s[-1]:.2f}s" for n, s in seconds.items()), flush=True)
    return seconds


def matvec_bench(size: int, repeats: int, stream_bytes: int) -> dict[str, dict[str, float]]:
    """[1, size] × [size, size] products: ms and GB/s of weight bytes, for one matrix (it stays in the CPU's
    last-level cache) and cycling through copies totalling `stream_bytes` (read from DRAM every time)."""
    from puyu.quant.kernels import load_kernels
    from puyu.quant.weight_only import Int4Linear, Int8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(size, size, bias=False)
    x = torch.randn(1, size)
    int8 = Int8Linear.from_linear(linear)
    int4 = Int4Linear.from_linear(linear, group_size=128)
    modules: dict[str, tuple[torch.nn.Module, Callable[[torch.nn.Module], Any], int]] = {
        "fp32 F.linear": (linear, lambda m: F.linear(x, m.weight), size * size * 4),
        "torch._weight_int8pack_mm": (
            int8, lambda m: torch._weight_int8pack_mm(x, m.qweight, m.scales), int8.weight_bytes()
        ),
    }  # fmt: skip
    if load_kernels() is not None:
        modules["puyu int8 kernel"] = (int8, lambda m: m(x), int8.weight_bytes())
        modules["puyu int4 kernel (g128)"] = (int4, lambda m: m(x), int4.weight_bytes())
    results: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for name, (module, run, nbytes) in modules.items():
            for mode, copies in (("cached", 1), ("dram", max(1, -(-stream_bytes // nbytes)))):
                pool = [module] if copies == 1 else [copy.deepcopy(module) for _ in range(copies)]
                for m in pool[:5]:
                    run(m)
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    for m in pool * max(1, 10 // copies):
                        run(m)
                    times.append((time.perf_counter() - start) / (len(pool) * max(1, 10 // copies)))
                best = statistics.median(times)
                row = {"ms": best * 1e3, "gb_per_s": nbytes / best / 1e9, "weight_mb": nbytes / 1e6}
                results[f"{name} [{mode}]"] = row
                del pool
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per variant (default 3)")
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens to generate (default 128)")
    parser.add_argument("--prompt-len", type=int, default=32, help="prompt tokens (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench"), help="where model folders are cached")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random model and prompt")
    parser.add_argument("--engine", action="store_true", help="also time decoding through puyu.LLM")
    parser.add_argument("--trained", type=Path, help="a trained model folder: report its perplexity change too")
    parser.add_argument(
        "--trained-text", type=Path, default=SHAKESPEARE, help="text for the trained model's perplexity (.txt/.jsonl)"
    )
    parser.add_argument("--json", type=Path, help="write all figures here")
    args = parser.parse_args(argv)

    from puyu.generation.generate import generate_tokens
    from puyu.generation.sampling import SamplingParams
    from puyu.model import load_model

    torch.set_num_threads(args.threads)
    folders = ensure_folders(args.workdir, args.seed)
    models = {name: load_model(folder) for name, folder in folders.items()}
    vocab = models["fp32"].config.vocab_size
    prompt = torch.randint(3, vocab, (args.prompt_len,), generator=torch.Generator().manual_seed(args.seed + 1))
    params = SamplingParams(max_tokens=args.new_tokens, temperature=0, ignore_eos=True)

    mem = {name: memory(model) for name, model in models.items()}
    windows = text_windows(folders["fp32"])
    ppl = {name: perplexity(model, windows) for name, model in models.items()} if windows is not None else {}

    runners: dict[str, Callable[[], list[int]]] = {
        name: (lambda m=model: generate_tokens(m, prompt.tolist(), params)) for name, model in models.items()
    }
    tokens = {name: run() for name, run in runners.items()}
    seconds = time_calls(runners, args.repeats)
    if args.engine:
        from puyu.engine.llm import LLM

        del models
        engines = {name: LLM(folder) for name, folder in folders.items()}
        engine_runners: dict[str, Callable[[], list[int]]] = {
            f"engine {name}": (lambda e=llm: e.generate([prompt.tolist()], params)[0].token_ids)
            for name, llm in engines.items()
        }
        seconds.update(time_calls(engine_runners, args.repeats))

    trained: dict[str, Any] = {}
    if args.trained:
        trained = trained_case(args.trained, args.trained_text, args.workdir)

    micro = matvec_bench(4096, repeats=5, stream_bytes=600_000_000)
    decode = {name: args.new_tokens / statistics.median(s) for name, s in seconds.items()}
    summary = {
        "memory": mem,
        "memory_ratio": {n: mem[n]["total_bytes"] / mem["fp32"]["total_bytes"] for n in mem},
        "decode_bytes_ratio": {
            n: mem[n]["decode_bytes_per_token"] / mem["fp32"]["decode_bytes_per_token"] for n in mem
        },
        "decode_tokens_per_s": decode,
        "decode_speedup": {n: decode[n] / decode["fp32"] for n in models_names(decode)},
        "perplexity": ppl,
        "greedy_tokens_match_fp32": {n: tokens[n] == tokens["fp32"] for n in tokens},
        "first_divergence": {n: first_difference(tokens[n], tokens["fp32"]) for n in tokens},
        "matvec_4096": micro,
        "trained": trained,
    }
    if args.engine:
        summary["engine_speedup"] = {
            n: decode[f"engine {n}"] / decode["engine fp32"] for n in VARIANTS if f"engine {n}" in decode
        }
    print(markdown(summary, args))
    if args.json:
        report = {
            "benchmark": "quant_decode",
            "shape": SHAPE,
            "prompt_len": args.prompt_len,
            "new_tokens": args.new_tokens,
            "repeats": args.repeats,
            "machine": machine_info(("torch",), torch_threads=args.threads),
            "summary": summary,
            "seconds": seconds,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def models_names(decode: dict[str, float]) -> list[str]:
    return [n for n in VARIANTS if n in decode]


def first_difference(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)


def trained_case(folder: Path, text_file: Path, workdir: Path) -> dict[str, Any]:
    """Perplexity of a trained model and its int8 / int4 copies (int4 only where the widths fit its groups)."""
    from puyu.errors import PuyuError
    from puyu.model import load_model
    from puyu.quant.quantize import quantize_folder

    windows = text_windows(folder, text_file)
    if windows is None:
        return {}
    result: dict[str, Any] = {
        "folder": str(folder),
        "text": str(text_file),
        "fp32": perplexity(load_model(folder, dtype="float32"), windows),
    }
    recipes = {"int8": ("int8", 128, True), "int8-fp32-head": ("int8", 128, False), "int4-g128": ("int4", 128, True),
               "int4-g32": ("int4", 32, True)}  # fmt: skip
    for name, (method, group, head) in recipes.items():
        out = workdir / f"trained-{folder.name}-{name}"
        try:
            quantize_folder(folder, out, method=method, group_size=group, lm_head=head)
        except PuyuError as bad:
            result[name] = f"n/a ({bad})"
            continue
        result[name] = perplexity(load_model(out), windows)
    return result


def markdown(s: dict[str, Any], args: argparse.Namespace) -> str:
    mb = 1e6
    lines = [
        f"### Weight-only quantization (random InternLM2-shaped ~254M model, fp32 baseline, {args.threads} threads)",
        "",
        f"Greedy decode of {args.new_tokens} tokens after a {args.prompt_len}-token prompt through "
        f"`generate_tokens`, median of {args.repeats}. Perplexity on tinyshakespeare (byte-level tokens; a random "
        "model's perplexity change is only a proxy for quantization damage).",
        "",
        "| variant | weights in memory | ratio | bytes read / token | ratio | decode tok/s | speedup | perplexity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in VARIANTS:
        m = s["memory"][n]
        ppl = f"{s['perplexity'][n]:.2f}" if n in s["perplexity"] else "n/a"
        lines.append(
            f"| {n} | {m['total_bytes'] / mb:.0f} MB | {s['memory_ratio'][n]:.3f}× | "
            f"{m['decode_bytes_per_token'] / mb:.0f} MB | {s['decode_bytes_ratio'][n]:.3f}× | "
            f"{s['decode_tokens_per_s'][n]:.1f} | {s['decode_speedup'][n]:.2f}× | {ppl} |"
        )
    if "engine_speedup" in s:
        lines += ["", "Through `puyu.LLM` (the serving engine): " + ", ".join(
            f"{n} {s['decode_tokens_per_s'][f'engine {n}']:.1f} tok/s ({s['engine_speedup'][n]:.2f}×)"
            for n in s["engine_speedup"]
        )]  # fmt: skip
    matches = [
        f"{n}: {'yes' if ok else 'from token ' + str(s['first_divergence'][n])}"
        for n, ok in s["greedy_tokens_match_fp32"].items()
        if n != "fp32"
    ]
    lines += [
        "",
        "Greedy tokens identical to fp32: " + ", ".join(matches),
        "",
        "4096×4096 matrix-vector product (one token row); [cached]: one matrix, which stays in the last-level "
        "cache; [dram]: cycling through copies totalling 600 MB, so weights come from memory:",
        "",
        "| implementation | weight MB | ms | GB/s of weights |",
        "|---|---:|---:|---:|",
    ]
    for name, r in s["matvec_4096"].items():
        lines.append(f"| {name} | {r['weight_mb']:.1f} | {r['ms']:.3f} | {r['gb_per_s']:.1f} |")
    if s["trained"]:
        t = s["trained"]
        lines += ["", f"Trained model `{t['folder']}`, perplexity on `{t['text']}`: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in t.items() if k not in ("folder", "text")
        )]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
