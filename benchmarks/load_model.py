"""Load-time benchmark: `puyu.model.load_model` vs transformers' `AutoModelForCausalLM.from_pretrained`.

What is compared: both loaders read the *same* folder, a random ~1.1B-parameter model (preset
`internlm2-1b`) stored once in bf16 in the Llama layout, which transformers' `LlamaForCausalLM` loads
natively. It is written under `--workdir` on the first run and reused afterwards.

How: every measurement runs in a fresh Python subprocess, so its peak RSS belongs to that one load.
Repetitions alternate puyu, transformers, puyu, transformers, ... for each compute dtype (bf16 as
stored, and fp32, which converts every tensor), after one untimed load of each (`--warmup`): in trial runs the
first fp32 load after the bf16 ones was up to 3x slower than the rest. The file is read once
beforehand, so every load sees a warm page cache. The child reports:

- `load_s`: wall time of the load call alone, to a model in eval mode (imports are timed separately);
- `forward_s`: the first forward on 8 tokens afterwards; a bf16 load that keeps the weights as views of
  the memory-mapped file only reads them here, so load + first forward is the time to a model that has
  touched all its weights;
- `peak_rss`: `ru_maxrss` after the load, and `rss` / `rss_anon` (private memory) right after it.

In the first repetition of each dtype the puyu child also loads the transformers model afterwards (its
figures are already taken) and prints the largest absolute difference of the two models' logits on the
same input, so the comparison is like-for-like.

    .venv/bin/python benchmarks/load_model.py --repeats 3 --json runs/bench/load_model.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machine import machine_info

if TYPE_CHECKING:
    import torch

IMPLS = ("puyu", "transformers")
DTYPES = ("bfloat16", "float32")
RESULT_PREFIX = "BENCH_RESULT "
INPUT_LEN = 8
MiB = 1 << 20
# Medians compared as puyu / transformers, in table order.
RATIO_FIELDS = (
    "load_s",
    "load_forward_s",
    "peak_rss",
    "rss_after_load",
    "rss_anon_after_load",
    "peak_rss_after_forward",
)


# ---- the child: one load in a fresh process ---------------------------------------------------------


def _proc_status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (e.g. RssAnon, VmHWM) in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _load(impl: str, folder: Path, dtype: str) -> torch.nn.Module:
    import torch

    if impl == "puyu":
        from puyu.model import load_model

        return load_model(folder, dtype=dtype)
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).eval()


def _logits(impl: str, model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    import torch

    with torch.inference_mode():
        out = model(ids)
    return out if impl == "puyu" else out.logits


def run_child(impl: str, folder: Path, dtype: str, verify: bool) -> dict[str, Any]:
    """Import, load, forward once; figures in a dict (printed as one JSON line by `main`)."""
    import resource

    start = time.perf_counter()
    import psutil
    import torch

    if impl == "puyu":
        import puyu.model  # noqa: F401
    else:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    import_s = time.perf_counter() - start
    process = psutil.Process()
    rss_before = process.memory_info().rss

    start = time.perf_counter()
    model = _load(impl, folder, dtype)
    load_s = time.perf_counter() - start
    rss_after = process.memory_info().rss
    rss_anon = _proc_status_bytes("RssAnon")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    vm_hwm = _proc_status_bytes("VmHWM")  # this image's own high-water mark; ru_maxrss also counts the parent's

    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (1, INPUT_LEN), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    logits = _logits(impl, model, ids)
    forward_s = time.perf_counter() - start
    result: dict[str, Any] = {
        "impl": impl,
        "dtype": dtype,
        "param_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "num_params": sum(p.numel() for p in model.parameters()),
        "import_s": import_s,
        "load_s": load_s,
        "forward_s": forward_s,
        "rss_before_load": rss_before,
        "rss_after_load": rss_after,
        "rss_anon_after_load": rss_anon,
        "peak_rss": peak_rss,
        "vm_hwm": vm_hwm,
        "peak_rss_after_forward": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if verify:
        other = IMPLS[1 - IMPLS.index(impl)]
        reference = _logits(other, _load(other, folder, dtype), ids)
        result["verify_against"] = other
        result["logits_max_abs_diff"] = (logits.float() - reference.float()).abs().max().item()
        result["logits_max_abs"] = reference.float().abs().max().item()
        result["argmax_equal"] = bool(torch.equal(logits.argmax(-1), reference.argmax(-1)))
    return result


# ---- the parent: model folder, subprocesses, summary ------------------------------------------------


def write_model(folder: Path, preset: str, seed: int) -> None:
    """Write the random model (run in a child, so the parent never holds it: a child's `ru_maxrss` starts at
    its parent's RSS when it was forked)."""
    import torch

    from puyu.model import ModelConfig, save_model
    from puyu.model.init import random_model

    model = random_model(ModelConfig.from_name(preset), seed=seed, dtype=torch.bfloat16)
    save_model(model, folder, family="llama", dtype="bfloat16")


def ensure_model(workdir: Path, preset: str, seed: int) -> Path:
    """The benchmark folder: written once (bf16, Llama layout), reused while its stamp matches."""
    folder = workdir / f"{preset}-llama-bf16-seed{seed}"
    stamp = folder / "bench_stamp.json"
    want = {"preset": preset, "seed": seed, "layout": "llama", "dtype": "bfloat16"}
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == want:
        print(f"reusing {folder}")
        return folder
    print(f"writing a random {preset} model to {folder} ...", flush=True)
    start = time.perf_counter()
    if folder.exists():
        shutil.rmtree(folder)
    cmd = [sys.executable, __file__, "--write-model", str(folder), "--preset", preset, "--seed", str(seed)]
    subprocess.run(cmd, check=True)
    stamp.write_text(json.dumps(want) + "\n", encoding="utf-8")
    print(f"  done in {time.perf_counter() - start:.1f} s")
    return folder


def warm_page_cache(folder: Path) -> None:
    for file in sorted(folder.glob("*.safetensors")):
        with open(file, "rb") as handle:
            while handle.read(64 * MiB):
                pass


def spawn_child(impl: str, folder: Path, dtype: str, verify: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", impl, "--model-dir", str(folder), "--dtypes", dtype]
    if verify:
        cmd.append("--verify")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"child {impl}/{dtype} failed with exit status {proc.returncode}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX))
    result = json.loads(line.removeprefix(RESULT_PREFIX))
    result["process_s"] = time.perf_counter() - start
    return result


def summarize(runs: list[dict[str, Any]], dtypes: list[str]) -> dict[str, Any]:
    """Medians per (impl, dtype) and puyu/transformers ratios per dtype."""
    fields = (*RATIO_FIELDS[2:], "load_s", "forward_s", "import_s", "vm_hwm")
    summary: dict[str, Any] = {}
    for dtype in dtypes:
        per_impl = {}
        for impl in IMPLS:
            rows = [r for r in runs if r["impl"] == impl and r["dtype"] == dtype]
            med = {f: statistics.median(r[f] for r in rows) for f in fields}
            med["load_forward_s"] = statistics.median(r["load_s"] + r["forward_s"] for r in rows)
            med["load_s_all"] = [round(r["load_s"], 3) for r in rows]
            per_impl[impl] = med
        ratio = {f: per_impl["puyu"][f] / per_impl["transformers"][f] for f in RATIO_FIELDS}
        checks = [r for r in runs if r["dtype"] == dtype and "logits_max_abs_diff" in r]
        summary[dtype] = {"median": per_impl, "ratio_puyu_over_transformers": ratio, "logits_check": checks[:1]}
    return summary


def print_table(summary: dict[str, Any], repeats: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Loading a ~1.1B model stored in bf16: medians of {repeats} fresh processes (memory in MiB)",
        caption="peak RSS = ru_maxrss after the load; RSS after / anon = RSS and its private part after the load; "
        "peak w/ fwd = ru_maxrss after the first forward",
    )
    columns = ("dtype", "loader", "load s", "load+fwd s", "peak RSS", "RSS after", "anon", "peak w/ fwd", "import s")
    for name in columns:
        table.add_column(name, justify="left" if name in ("dtype", "loader") else "right", no_wrap=True)
    for dtype, entry in summary.items():
        for impl in IMPLS:
            m = entry["median"][impl]
            table.add_row(
                dtype,
                impl,
                f"{m['load_s']:.2f}",
                f"{m['load_forward_s']:.2f}",
                f"{m['peak_rss'] / MiB:.0f}",
                f"{m['rss_after_load'] / MiB:.0f}",
                f"{m['rss_anon_after_load'] / MiB:.0f}",
                f"{m['peak_rss_after_forward'] / MiB:.0f}",
                f"{m['import_s']:.2f}",
            )
        r = entry["ratio_puyu_over_transformers"]
        table.add_row(
            dtype,
            "[bold]puyu/transformers[/bold]",
            *(f"{r[f]:.2f}x" for f in RATIO_FIELDS),
            "",
            end_section=True,
        )
    Console(width=max(132, Console().width)).print(table)
    for dtype, entry in summary.items():
        for check in entry["logits_check"]:
            print(
                f"{dtype}: logits max |puyu - transformers| = {check['logits_max_abs_diff']:.3g} "
                f"(max |logit| {check['logits_max_abs']:.3g}), same argmax: {check['argmax_equal']}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="loads per loader and dtype (default 3)")
    parser.add_argument(
        "--warmup", type=int, choices=(0, 1), default=1, help="one untimed load per loader and dtype first (default 1)"
    )
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated compute dtypes (default: both)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench"), help="where the model folder is cached")
    parser.add_argument("--preset", default="internlm2-1b", help="model shape (default internlm2-1b)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed of the random model")
    parser.add_argument("--json", type=Path, help="write all runs and the summary here")
    parser.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--verify", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--write-model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not dtypes or any(d not in DTYPES for d in dtypes):
        parser.error(f"--dtypes: choose from {', '.join(DTYPES)}")

    if args.write_model:
        write_model(args.write_model, args.preset, args.seed)
        return 0
    if args.child:
        result = run_child(args.child, args.model_dir, dtypes[0], args.verify)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    folder = ensure_model(args.workdir, args.preset, args.seed)
    warm_page_cache(folder)
    runs: list[dict[str, Any]] = []
    for dtype in dtypes:
        for impl in IMPLS[: 2 * args.warmup]:
            result = spawn_child(impl, folder, dtype, verify=False)
            print(f"[{dtype} warm-up] {impl:12s} load {result['load_s']:6.2f} s (not counted)", flush=True)
        for rep in range(args.repeats):
            for impl in IMPLS:
                verify = rep == 0 and impl == "puyu"
                result = spawn_child(impl, folder, dtype, verify)
                result["repeat"] = rep
                runs.append(result)
                extra = f", logits max abs diff {result['logits_max_abs_diff']:.3g}" if verify else ""
                print(
                    f"[{dtype} {rep + 1}/{args.repeats}] {impl:12s} load {result['load_s']:6.2f} s, "
                    f"1st forward {result['forward_s']:5.2f} s, peak RSS {result['peak_rss'] / MiB:6.0f} MiB"
                    f"{extra}",
                    flush=True,
                )
    summary = summarize(runs, dtypes)
    print_table(summary, args.repeats)
    if args.json:
        report = {
            "benchmark": "load_model",
            "model_dir": str(folder),
            "preset": args.preset,
            "repeats": args.repeats,
            "machine": machine_info(("torch", "transformers", "safetensors")),
            "summary": summary,
            "runs": runs,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
