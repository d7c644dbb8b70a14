"""Serving throughput: puyu's continuous-batching engine vs transformers' static-batch `generate`, CPU.

What is compared: `puyu.engine.LLMEngine` (paged KV cache, continuous batching, chunked prefill) and
transformers' `LlamaForCausalLM.generate` (dynamic cache, SDPA) on the same random InternLM2-architecture
model (preset `internlm2-100m` by default, fp32), written once with `init_model_folder` and saved again in
the Llama layout for transformers.

Workload: `--requests` synthetic requests with ShareGPT-like lengths (lognormal; input median 128 clipped to
16..512, output median 128 clipped to 16..256; fixed seed); every request generates exactly its output length
(puyu: `ignore_eos`; transformers: `min_new_tokens`).

- puyu, concurrency C: at most C requests in the engine; a finished one is replaced by the next. Output
  tokens/s over the whole run, time to first token (from add_request) and inter-token latency per request.
- transformers, concurrency C: static batches of C requests (left-padded), each run until its longest
  output; throughput counts only the tokens the requests asked for.
- single stream: the engine's decode rate (1 / median inter-token latency at concurrency 1) against the
  memory-bandwidth roofline: measured read bandwidth / bytes of weights read per token (all weights except
  the embedding table, of which one row is read).

    flock /tmp/puyu-heavy.lock .venv/bin/python benchmarks/serve_throughput.py --json runs/bench/serve.json
    flock /tmp/puyu-heavy.lock .venv/bin/python benchmarks/serve_throughput.py --quick
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from machine import machine_info


def workload(count: int, seed: int, vocab: int, max_out: int = 256) -> list[tuple[list[int], int]]:
    """(prompt ids, output length) pairs with ShareGPT-like lognormal lengths."""
    rng = np.random.default_rng(seed)
    inputs = np.clip(rng.lognormal(np.log(128), 0.8, count), 16, 512).astype(int)
    outputs = np.clip(rng.lognormal(np.log(128), 0.6, count), 16, max_out).astype(int)
    return [(rng.integers(3, vocab, n).tolist(), int(m)) for n, m in zip(inputs, outputs, strict=True)]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_engine(engine: Any, requests: list[tuple[list[int], int]], concurrency: int) -> dict[str, Any]:
    """Feed up to `concurrency` requests at a time; time every output."""
    from puyu.generation.sampling import SamplingParams

    pending = list(enumerate(requests))
    added: dict[str, float] = {}
    stamps: dict[str, list[float]] = {}
    produced = 0
    active = 0
    start = time.perf_counter()
    while pending or active:
        while pending and active < concurrency:
            i, (prompt, out_len) = pending.pop(0)
            engine.add_request(str(i), prompt, SamplingParams(max_tokens=out_len, temperature=0, ignore_eos=True))
            added[str(i)] = time.perf_counter()
            stamps[str(i)] = []
            active += 1
        for out in engine.step():
            now = time.perf_counter()
            stamps[out.request_id].extend([now] * len(out.token_ids))
            produced += len(out.token_ids)
            if out.finished:
                active -= 1
    elapsed = time.perf_counter() - start
    ttft = [s[0] - added[r] for r, s in stamps.items()]
    itl = [b - a for s in stamps.values() for a, b in itertools.pairwise(s)]
    return {
        "output_tokens": produced,
        "seconds": elapsed,
        "tokens_per_s": produced / elapsed,
        "ttft_p50_ms": 1000 * percentile(ttft, 50),
        "ttft_p99_ms": 1000 * percentile(ttft, 99),
        "itl_p50_ms": 1000 * percentile(itl, 50),
        "itl_p99_ms": 1000 * percentile(itl, 99),
        "preempted": engine.stats().num_preempted_total,
    }


def run_transformers(model: Any, requests: list[tuple[list[int], int]], batch: int, pad_id: int) -> dict[str, Any]:
    """Static batches of `batch` requests, left-padded, each generating up to its longest output."""
    wanted = 0
    start = time.perf_counter()
    for b in range(0, len(requests), batch):
        group = requests[b : b + batch]
        width = max(len(p) for p, _ in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (prompt, _) in enumerate(group):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        longest = max(m for _, m in group)
        with torch.inference_mode():
            model.generate(
                ids,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=longest,
                min_new_tokens=longest,
                pad_token_id=pad_id,
            )
        wanted += sum(m for _, m in group)
    elapsed = time.perf_counter() - start
    return {"output_tokens": wanted, "seconds": elapsed, "tokens_per_s": wanted / elapsed}


def read_bandwidth(size_mb: int = 1024, repeats: int = 5) -> float:
    """Bytes/s of streaming a large fp32 tensor through a reduction (the access pattern of a matvec)."""
    data = torch.ones(size_mb * 2**20 // 4)
    data.sum()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best


def weight_bytes_per_token(model: torch.nn.Module) -> int:
    """Bytes of parameters one decode step reads: everything but the embedding table (one row of it)."""
    embed = model.model.embed_tokens.weight
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    if model.lm_head.weight is not embed:  # tied: the table is read in full by the output projection
        total -= embed.numel() * embed.element_size() - embed.shape[1] * embed.element_size()
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="internlm2-100m", help="model shape (default internlm2-100m)")
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level (default 64)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels (default 1,8,32)")
    parser.add_argument("--single-requests", type=int, default=4, help="requests at concurrency 1 (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="16 requests, outputs up to 64 tokens, levels 1,8")
    parser.add_argument("--no-transformers", action="store_true", help="skip the transformers baseline")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    max_out = 256
    if args.quick:
        args.requests, levels, max_out, args.single_requests = 16, [1, 8], 64, 2

    import transformers

    from puyu.engine import EngineConfig, LLMEngine
    from puyu.model import load_model, save_model
    from puyu.model.init import init_model_folder

    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    tmp = Path(tempfile.mkdtemp(prefix="puyu-serve-bench-"))
    folder = init_model_folder(args.preset, tmp / "internlm2", overrides={"torch_dtype": "float32"}, seed=args.seed)
    model = load_model(folder, dtype="float32")
    save_model(model, tmp / "llama", family="llama", dtype="float32")
    config = model.config
    print(f"model: {args.preset}, {config.num_parameters() / 1e6:.0f}M parameters, fp32", flush=True)

    from puyu.tokenizer import Tokenizer

    vocab = Tokenizer.from_pretrained(folder).vocab_size
    requests = workload(args.requests, args.seed, vocab, max_out)
    engine_config = EngineConfig(
        max_num_seqs=max(levels), max_num_batched_tokens=1024, max_model_len=1024, kv_cache_memory="3GB", device="cpu"
    )
    engine = LLMEngine.from_pretrained(folder, engine_config)
    run_engine(engine, requests[:2], 2)  # warm-up
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp / "llama", dtype=torch.float32).eval()
    pad = 0

    results: dict[str, Any] = {"puyu": {}, "transformers": {}}
    for level in levels:
        subset = requests[: args.single_requests] if level == 1 else requests
        # A fresh prefix cache per level: synthetic prompts share nothing, so this only resets accounting.
        engine = LLMEngine(engine.model, engine.tokenizer, engine_config)
        ours = run_engine(engine, subset, level)
        results["puyu"][level] = ours
        print(f"puyu         C={level:3d}: {ours['tokens_per_s']:7.1f} tok/s  ({ours['seconds']:.1f} s)", flush=True)
        if not args.no_transformers:
            theirs = run_transformers(hf, subset, level, pad)
            results["transformers"][level] = theirs
            print(
                f"transformers C={level:3d}: {theirs['tokens_per_s']:7.1f} tok/s  ({theirs['seconds']:.1f} s)",
                flush=True,
            )

    bandwidth = read_bandwidth()
    per_token = weight_bytes_per_token(model)
    roofline = bandwidth / per_token
    single = 1000 / results["puyu"][1]["itl_p50_ms"] if 1 in results["puyu"] else float("nan")
    results["roofline"] = {
        "read_bandwidth_gb_s": bandwidth / 1e9,
        "weight_bytes_per_token": per_token,
        "roofline_tokens_per_s": roofline,
        "single_stream_tokens_per_s": single,
        "fraction": single / roofline,
    }

    lines = [
        f"### Serving throughput ({args.preset}, fp32, {args.threads} threads, "
        f"{len(requests)} requests, ShareGPT-like lengths)",
        "",
        "| concurrency | puyu tok/s | transformers tok/s | ratio | TTFT p50 / p99 (ms) | ITL p50 / p99 (ms) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for level in levels:
        ours = results["puyu"][level]
        theirs = results["transformers"].get(level)
        hf_rate = f"{theirs['tokens_per_s']:.1f}" if theirs else "-"
        ratio = f"{ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x" if theirs else "-"
        lines.append(
            f"| {level} | {ours['tokens_per_s']:.1f} | {hf_rate} | {ratio} | "
            f"{ours['ttft_p50_ms']:.0f} / {ours['ttft_p99_ms']:.0f} | "
            f"{ours['itl_p50_ms']:.1f} / {ours['itl_p99_ms']:.1f} |"
        )
    r = results["roofline"]
    lines += [
        "",
        f"Single-stream decode: {r['single_stream_tokens_per_s']:.1f} tok/s; roofline "
        f"{r['read_bandwidth_gb_s']:.1f} GB/s / {r['weight_bytes_per_token'] / 1e6:.0f} MB per token = "
        f"{r['roofline_tokens_per_s']:.1f} tok/s → {100 * r['fraction']:.0f}% of roofline.",
        f"(Concurrency 1 runs the first {args.single_requests} requests.)",
    ]
    block = "\n".join(lines)
    print()
    print(block)
    if args.json:
        report = {
            "benchmark": "serve_throughput",
            "preset": args.preset,
            "machine": machine_info(("torch", "transformers"), torch_threads=args.threads),
            "results": results,
            "markdown": block,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
