"""Decode-speed benchmark: puyu's reference generation vs transformers' `generate`, single stream, CPU.

What is compared: `puyu.generation.generate.generate_tokens` (dense preallocated KV cache, plain torch)
and transformers' `model.generate` (its default dynamic cache, SDPA attention), both greedy, on the same
random ~100M-parameter model (preset `internlm2-100m`, fp32) saved once in the Llama layout under
`--workdir` and loaded by each library's own loader.

How: one process, `torch.set_num_threads(--threads)` for both. A fixed random 32-token prompt, then 128
new tokens that never stop early (puyu: `ignore_eos`; transformers: `min_new_tokens=128`, pad id set).
Each side gets one untimed warm-up generation, then timed repetitions alternate puyu, transformers, ...
The figure is new tokens / wall time of the whole call (prefill included); the report gives medians,
the ratio puyu/transformers, and whether the two greedy token sequences are identical.

    .venv/bin/python benchmarks/decode_speed.py --repeats 5 --json runs/bench/decode_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from machine import machine_info

IMPLS = ("puyu", "transformers")


def ensure_model(workdir: Path, preset: str, seed: int) -> Path:
    """The benchmark folder: written once (fp32, Llama layout), reused while its stamp matches."""
    from puyu.model import ModelConfig, save_model
    from puyu.model.init import random_model

    folder = workdir / f"{preset}-llama-fp32-seed{seed}"
    stamp = folder / "bench_stamp.json"
    want = {"preset": preset, "seed": seed, "layout": "llama", "dtype": "float32"}
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == want:
        print(f"reusing {folder}")
        return folder
    print(f"writing a random {preset} model to {folder} ...", flush=True)
    model = random_model(ModelConfig.from_name(preset), seed=seed, dtype=torch.float32)
    save_model(model, folder, family="llama", dtype="float32")
    stamp.write_text(json.dumps(want) + "\n", encoding="utf-8")
    return folder


def make_runners(folder: Path, prompt: list[int], new_tokens: int) -> dict[str, Callable[[], list[int]]]:
    """Each library's model, loaded its own way, behind a `() -> new token ids` call."""
    import transformers

    from puyu.generation.generate import generate_tokens
    from puyu.generation.sampling import SamplingParams
    from puyu.model import load_model

    ours = load_model(folder, dtype="float32")
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)

    transformers.utils.logging.disable_progress_bar()
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    eos = hf.config.eos_token_id
    hf_kwargs: dict[str, Any] = {
        "do_sample": False,
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,  # EOS is masked until the last token, so generation never stops early
        "eos_token_id": eos,
        "pad_token_id": eos if isinstance(eos, int) else 0,
    }
    ids = torch.tensor([prompt], dtype=torch.long)
    mask = torch.ones_like(ids)

    def run_puyu() -> list[int]:
        return generate_tokens(ours, prompt, params)

    def run_transformers() -> list[int]:
        with torch.inference_mode():
            out = hf.generate(ids, attention_mask=mask, **hf_kwargs)
        return out[0, len(prompt) :].tolist()

    return {"puyu": run_puyu, "transformers": run_transformers}


def print_table(summary: dict[str, Any], repeats: int, new_tokens: int, prompt_len: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Greedy decode, ~100M fp32 model, {prompt_len}-token prompt + {new_tokens} new tokens, "
        f"median of {repeats}"
    )
    for name in ("generator", "tokens/s", "ms/token", "min tok/s", "max tok/s"):
        table.add_column(name, justify="left" if name == "generator" else "right", no_wrap=True)
    for impl in IMPLS:
        s = summary[impl]
        table.add_row(
            impl,
            f"{s['tokens_per_s']:.1f}",
            f"{1000 / s['tokens_per_s']:.1f}",
            f"{s['min_tokens_per_s']:.1f}",
            f"{s['max_tokens_per_s']:.1f}",
        )
    ratio, best = summary["ratio_puyu_over_transformers"], summary["ratio_best_puyu_over_transformers"]
    table.add_row("[bold]puyu/transformers[/bold]", f"{ratio:.2f}x", "", "", f"{best:.2f}x")
    Console(width=max(100, Console().width)).print(table)
    print(f"token sequences identical: {summary['tokens_match']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed generations per library (default 5)")
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens to generate (default 128)")
    parser.add_argument("--prompt-len", type=int, default=32, help="prompt tokens (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads for both (default 2)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench"), help="where the model folder is cached")
    parser.add_argument("--preset", default="internlm2-100m", help="model shape (default internlm2-100m)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random model and prompt")
    parser.add_argument("--json", type=Path, help="write all timings and the summary here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.new_tokens < 1 or args.prompt_len < 1 or args.threads < 1:
        parser.error("--repeats, --new-tokens, --prompt-len and --threads must be at least 1")

    torch.set_num_threads(args.threads)
    folder = ensure_model(args.workdir, args.preset, args.seed)
    vocab = json.loads((folder / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    generator = torch.Generator().manual_seed(args.seed + 1)
    prompt = torch.randint(3, vocab, (args.prompt_len,), generator=generator).tolist()
    runners = make_runners(folder, prompt, args.new_tokens)

    outputs: dict[str, list[list[int]]] = {impl: [] for impl in IMPLS}
    seconds: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for impl in IMPLS:
        start = time.perf_counter()
        outputs[impl].append(runners[impl]())
        print(f"warm-up {impl:12s} {time.perf_counter() - start:6.2f} s", flush=True)
    for rep in range(args.repeats):
        for impl in IMPLS:
            start = time.perf_counter()
            tokens = runners[impl]()
            elapsed = time.perf_counter() - start
            seconds[impl].append(elapsed)
            outputs[impl].append(tokens)
            print(
                f"[{rep + 1}/{args.repeats}] {impl:12s} {elapsed:6.2f} s  {len(tokens) / elapsed:6.1f} tokens/s",
                flush=True,
            )

    lengths_ok = all(len(t) == args.new_tokens for impl in IMPLS for t in outputs[impl])
    deterministic = all(t == outputs[impl][0] for impl in IMPLS for t in outputs[impl])
    tokens_match = lengths_ok and deterministic and outputs["puyu"][0] == outputs["transformers"][0]
    summary: dict[str, Any] = {}
    for impl in IMPLS:
        rates = [args.new_tokens / s for s in seconds[impl]]
        summary[impl] = {
            "tokens_per_s": statistics.median(rates),
            "min_tokens_per_s": min(rates),
            "max_tokens_per_s": max(rates),
            "seconds": seconds[impl],
        }
    summary["ratio_puyu_over_transformers"] = summary["puyu"]["tokens_per_s"] / summary["transformers"]["tokens_per_s"]
    # Best-of ratio: the fastest run of each, the least disturbed by other load on a shared machine.
    summary["ratio_best_puyu_over_transformers"] = (
        summary["puyu"]["max_tokens_per_s"] / summary["transformers"]["max_tokens_per_s"]
    )
    summary["tokens_match"] = tokens_match
    if not tokens_match:
        a, b = outputs["puyu"][0], outputs["transformers"][0]
        first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        summary["first_mismatch"] = first
        print(f"token sequences differ from position {first} (lengths {len(a)} / {len(b)})")
    print_table(summary, args.repeats, args.new_tokens, args.prompt_len)

    if args.json:
        report = {
            "benchmark": "decode_speed",
            "model_dir": str(folder),
            "preset": args.preset,
            "prompt_len": args.prompt_len,
            "new_tokens": args.new_tokens,
            "repeats": args.repeats,
            "machine": machine_info(("torch", "transformers"), torch_threads=args.threads),
            "summary": summary,
            "prompt": prompt,
            "tokens": {impl: outputs[impl][0] for impl in IMPLS},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
