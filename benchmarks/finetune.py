"""Fine-tuning benchmark: puyu LoRA vs PEFT + transformers (step time), and peak memory of full / LoRA / QLoRA.

What is compared:

* **LoRA step time.** One random model folder (preset `--preset`, default `qwen2-0.5b`: 494M parameters,
  fp32, Qwen2 layout), loaded by each library's own loader: puyu `load_model` + `apply_lora`; transformers
  `AutoModelForCausalLM.from_pretrained` (attn_implementation "sdpa") + `peft.get_peft_model`. Same
  adapters: rank 8, alpha 16, dropout 0, on q/k/v/o/gate/up/down of every layer. Same data: random tokens
  (seed 0), batch `--batch` × `--seq-len`, every position a target (the same T − 1 targets in both). Same
  optimizer: AdamW (lr 1e-4) over the adapter weights only. A step is forward, mean token cross-entropy,
  backward, optimizer step, zero_grad. The two alternate step by step in one process (after `--warmup`
  untimed steps of each), so step k of both sees the same machine load; figures are medians, "paired" the
  median of per-step ratios. B starts at zero in both, so the first losses must agree (printed).
* **Peak memory.** Full fine-tuning (AdamW over all weights), LoRA and QLoRA (NF4 with double
  quantization + LoRA), each in a fresh process (`--child`), `--mem-steps` steps on the same data;
  peak RSS = `ru_maxrss` at the end, which includes loading the fp32 folder.
* **NF4 kernels.** puyu's own dequantization vs bitsandbytes' (when installed) on one MLP matrix of the
  model's shape, and a forward + backward of the NF4 layer with each, against bitsandbytes' `Linear4bit`.

    flock /tmp/puyu-heavy.lock .venv/bin/python benchmarks/finetune.py --json runs/bench/finetune.json
    .venv/bin/python benchmarks/finetune.py --quick     # a small model, a few steps (~1 min)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine import machine_info

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK, ALPHA, LR = 8, 16.0, 1e-4


def _setup_torch(threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return torch


def _data(torch: Any, vocab: int, batch: int, seq_len: int) -> tuple[Any, Any]:
    """Random token ids and puyu's labels (already shifted: the last position has no target)."""
    ids = torch.randint(0, vocab, (batch, seq_len), generator=torch.Generator().manual_seed(0))
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]
    return ids, labels


def make_folder(args: argparse.Namespace) -> Path:
    from puyu.model.init import init_model_folder

    folder = Path(args.workdir) / f"{args.preset}-{args.layers or 'all'}"
    if not (folder / "config.json").is_file():
        overrides: dict[str, Any] = {"torch_dtype": "float32"}
        if args.layers:
            overrides["num_layers"] = args.layers
        init_model_folder(args.preset, folder, overrides=overrides, seed=0)
    return folder


# ---- (a) LoRA step time ------------------------------------------------------------------------


def puyu_lora(folder: Path, torch: Any) -> tuple[Any, Any]:
    from puyu.finetune.lora import LoraConfig, apply_lora, lora_parameters
    from puyu.model import load_model

    model = load_model(folder, dtype="float32")
    apply_lora(model, LoraConfig(r=RANK, alpha=ALPHA, target_modules=TARGETS))
    model.train()
    return model, torch.optim.AdamW(lora_parameters(model), lr=LR)


def puyu_step(model: Any, optimizer: Any, ids: Any, labels: Any, torch: Any) -> float:
    import torch.nn.functional as F

    # One expression, as `puyu.train.objectives.causal_lm_loss` does it: the logits are not held during backward.
    loss = F.cross_entropy(model(ids).float().flatten(0, 1), labels.flatten(), ignore_index=-100)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach().item()


def peft_lora(folder: Path, torch: Any) -> tuple[Any, Any]:
    import peft
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    config = peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, config)
    model.train()
    return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)


def peft_step(model: Any, optimizer: Any, ids: Any, torch: Any) -> float:
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach().item()


def bench_speed(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    torch = _setup_torch(args.threads)
    from puyu.model.config import ModelConfig

    config = ModelConfig.from_pretrained(folder)
    ids, labels = _data(torch, config.vocab_size, args.batch, args.seq_len)
    ours, our_opt = puyu_lora(folder, torch)
    theirs, their_opt = peft_lora(folder, torch)
    first = (puyu_step(ours, our_opt, ids, labels, torch), peft_step(theirs, their_opt, ids, torch))
    for _ in range(args.warmup - 1):
        puyu_step(ours, our_opt, ids, labels, torch)
        peft_step(theirs, their_opt, ids, torch)
    times: dict[str, list[float]] = {"puyu": [], "peft": []}
    for step in range(args.steps):
        start = time.perf_counter()
        puyu_step(ours, our_opt, ids, labels, torch)
        times["puyu"].append(time.perf_counter() - start)
        start = time.perf_counter()
        peft_step(theirs, their_opt, ids, torch)
        times["peft"].append(time.perf_counter() - start)
        print(f"step {step + 1}: puyu {times['puyu'][-1]:.2f} s, peft {times['peft'][-1]:.2f} s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = statistics.median(a / b for a, b in zip(times["puyu"], times["peft"], strict=True))
    return {
        "first_loss": {"puyu": first[0], "peft": first[1], "diff": abs(first[0] - first[1])},
        "times": times,
        "median_s": med,
        "ratio": med["puyu"] / med["peft"],
        "paired_ratio": paired,
        "fastest_ratio": min(times["puyu"]) / min(times["peft"]),
        "num_parameters": config.num_parameters(),
    }


# ---- (b) peak memory ---------------------------------------------------------------------------


def child(args: argparse.Namespace, folder: Path) -> None:
    """One method's steps in this (fresh) process; prints its peak RSS as JSON."""
    torch = _setup_torch(args.threads)
    from puyu.finetune.lora import LoraConfig, apply_lora, lora_parameters
    from puyu.model import load_model
    from puyu.quant.nf4 import quantize_model_nf4

    model = load_model(folder, dtype="float32")
    if args.child == "full":
        params = list(model.parameters())
        for p in params:
            p.requires_grad_(True)
    else:
        if args.child == "qlora":
            quantize_model_nf4(model, double_quant=True)
        apply_lora(model, LoraConfig(r=RANK, alpha=ALPHA, target_modules=TARGETS))
        params = lora_parameters(model)
    model.train()
    optimizer = torch.optim.AdamW(params, lr=LR)
    ids, labels = _data(torch, model.config.vocab_size, args.batch, args.seq_len)
    losses, times = [], []
    for _ in range(args.mem_steps):
        start = time.perf_counter()
        losses.append(puyu_step(model, optimizer, ids, labels, torch))
        times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trainable = sum(p.numel() for p in params)
    print(json.dumps({"method": args.child, "peak_rss_mib": peak_kib / 1024, "losses": losses, "step_s": times,
                      "trainable": trainable}))  # fmt: skip


def bench_memory(args: argparse.Namespace) -> dict[str, Any]:
    results = {}
    for method in ("full", "lora", "qlora"):
        command = [sys.executable, __file__, "--child", method, *_passthrough(args)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[method] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{method}: peak RSS {results[method]['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    for method in ("lora", "qlora"):
        results[method]["ratio_to_full"] = results[method]["peak_rss_mib"] / results["full"]["peak_rss_mib"]
    return results


def _passthrough(args: argparse.Namespace) -> list[str]:
    out = ["--preset", args.preset, "--workdir", args.workdir, "--batch", str(args.batch), "--seq-len",
           str(args.seq_len), "--threads", str(args.threads), "--mem-steps", str(args.mem_steps)]  # fmt: skip
    if args.layers:
        out += ["--layers", str(args.layers)]
    return out


# ---- (c) NF4 kernels ---------------------------------------------------------------------------


def bench_nf4(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    torch = _setup_torch(args.threads)
    from puyu.model.config import ModelConfig
    from puyu.quant import nf4

    config = ModelConfig.from_pretrained(folder)
    out_f, in_f = config.intermediate_size, config.hidden_size
    linear = torch.nn.Linear(in_f, out_f, bias=False)
    torch.nn.init.normal_(linear.weight, std=0.02)
    linear.requires_grad_(False)
    layer = nf4.NF4Linear.from_linear(linear, double_quant=True)
    packed, absmax = layer.packed, layer.block_absmax()
    x0 = torch.randn(args.batch, args.seq_len, in_f)

    def timed(fn: Any, repeats: int = 30) -> float:
        for _ in range(3):
            fn()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1000

    def fwd_bwd(module: Any) -> None:
        x = x0.clone().requires_grad_(True)
        module(x).sum().backward()

    numel = in_f * out_f
    result: dict[str, Any] = {"shape": [out_f, in_f]}
    result["dequant_ms_torch"] = timed(lambda: nf4.dequantize_nf4_torch(packed, absmax, numel))
    result["fwd_bwd_ms_fp32"] = timed(lambda: fwd_bwd(linear))
    kernel = nf4.bitsandbytes_kernel()
    if kernel is None:
        result["fwd_bwd_ms_torch"] = timed(lambda: fwd_bwd(layer))
        return result
    result["dequant_ms_bnb"] = timed(lambda: kernel(packed, absmax, 64, "nf4", [numel], torch.float32))
    result["fwd_bwd_ms_bnb_kernel"] = timed(lambda: fwd_bwd(layer))
    nf4.bitsandbytes_kernel.cache_clear()
    import os

    os.environ["PUYU_NF4_KERNEL"] = "torch"
    result["fwd_bwd_ms_torch"] = timed(lambda: fwd_bwd(layer))
    del os.environ["PUYU_NF4_KERNEL"]
    nf4.bitsandbytes_kernel.cache_clear()
    import bitsandbytes as bnb

    theirs = bnb.nn.Linear4bit(
        in_f, out_f, bias=False, compute_dtype=torch.float32, quant_type="nf4", compress_statistics=True
    )
    theirs.weight = bnb.nn.Params4bit(linear.weight.data.clone(), requires_grad=False, quant_type="nf4",
                                      compress_statistics=True, blocksize=64).to("cpu")  # fmt: skip
    result["fwd_bwd_ms_bnb_linear4bit"] = timed(lambda: fwd_bwd(theirs))
    return result


# ---- report ------------------------------------------------------------------------------------


def markdown(info: dict[str, Any], args: argparse.Namespace, results: dict[str, Any]) -> str:
    lines = ["**Machine**: " + ", ".join(f"{k} {v}" for k, v in info.items()), ""]
    speed = results.get("speed")
    if speed:
        lines += [
            f"LoRA step time, `{args.preset}`{f' ({args.layers} layers)' if args.layers else ''} "
            f"({speed['num_parameters'] / 1e6:.0f}M parameters, fp32), batch {args.batch} × {args.seq_len}, "
            f"r {RANK}, alpha {ALPHA:g}, 7 projections per layer, {args.steps} alternating steps after {args.warmup} "
            f"warm-up; first-step loss difference {speed['first_loss']['diff']:.1e}:",
            "",
            "| | s/step (median) | min–max |",
            "|---|---|---|",
        ]
        for name in ("puyu", "peft"):
            t = speed["times"][name]
            label = "puyu (CausalLM + apply_lora)" if name == "puyu" else "PEFT + transformers"
            lines.append(f"| {label} | {speed['median_s'][name]:.2f} | {min(t):.2f}–{max(t):.2f} |")
        lines.append(
            f"| **puyu / PEFT** | **{speed['ratio']:.2f}x** | paired {speed['paired_ratio']:.2f}x, "
            f"fastest {speed['fastest_ratio']:.2f}x |"
        )
        lines.append("")
    memory = results.get("memory")
    if memory:
        lines += [f"Peak RSS, fresh process each, {args.mem_steps} steps:", "",
                  "| method | peak RSS MiB | vs full | trainable |", "|---|---|---|---|"]  # fmt: skip
        for method in ("full", "lora", "qlora"):
            m = memory[method]
            ratio = f"{m['ratio_to_full']:.2f}x" if "ratio_to_full" in m else "1.00x"
            lines.append(f"| {method} | {m['peak_rss_mib']:.0f} | {ratio} | {m['trainable'] / 1e6:.2f}M |")
        lines.append("")
    kernels = results.get("nf4")
    if kernels:
        lines += [f"NF4 kernels on one {kernels['shape'][0]} × {kernels['shape'][1]} matrix (ms, median):", "",
                  "| | dequantize | forward + backward |", "|---|---|---|"]  # fmt: skip
        lines.append(f"| fp32 nn.Linear (frozen) | – | {kernels['fwd_bwd_ms_fp32']:.2f} |")
        lines.append(
            f"| puyu NF4Linear, own kernel | {kernels['dequant_ms_torch']:.2f} | {kernels['fwd_bwd_ms_torch']:.2f} |"
        )
        if "dequant_ms_bnb" in kernels:
            lines.append(
                f"| puyu NF4Linear, bitsandbytes kernel | {kernels['dequant_ms_bnb']:.2f} | "
                f"{kernels['fwd_bwd_ms_bnb_kernel']:.2f} |"
            )
            lines.append(f"| bitsandbytes Linear4bit | – | {kernels['fwd_bwd_ms_bnb_linear4bit']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="qwen2-0.5b")
    parser.add_argument("--layers", type=int, default=None, help="override the preset's layer count")
    parser.add_argument("--workdir", default="runs/bench/finetune")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--mem-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", nargs="*", default=[], choices=["speed", "memory", "nf4"])
    parser.add_argument("--quick", action="store_true", help="4 layers, 3 steps")
    parser.add_argument("--json", default=None, help="write every measurement here")
    parser.add_argument("--child", choices=["full", "lora", "qlora"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.layers, args.steps = args.layers or 4, 3
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    folder = make_folder(args)
    if args.child:
        child(args, folder)
        return
    results: dict[str, Any] = {}
    if "nf4" not in args.skip:
        results["nf4"] = bench_nf4(args, folder)
    if "speed" not in args.skip:
        results["speed"] = bench_speed(args, folder)
    if "memory" not in args.skip:
        results["memory"] = bench_memory(args)
    info = machine_info(["torch", "transformers", "peft", "bitsandbytes"], threads=args.threads)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args), **results}, indent=2) + "\n")
    print(markdown(info, args, results))


if __name__ == "__main__":
    main()
