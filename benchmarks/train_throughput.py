"""Training-throughput benchmark: puyu's training loop vs a plain transformers loop, same model and data, CPU.

What is compared, step for step on the same work:

* puyu: the real loop, `puyu.train.loop.pretrain(TrainConfig(...))`, in a fresh run folder per repetition
  (so it never resumes), `log_every=1`, no validation, no checkpoint but the final one the loop always writes.
* transformers: the usual hand-written loop: `LlamaForCausalLM` (attn_implementation "sdpa", `use_cache=False`
  as for any training) of the same shape (`ModelConfig.to_hf(family="llama")` → `LlamaConfig`),
  `loss = model(input_ids, position_ids=..., labels=...).loss`, `backward`, `clip_grad_norm_`, `AdamW.step`,
  scheduler step, `zero_grad`.

Same model: preset `internlm2-100m` with the vocabulary of a byte-level BPE tokenizer trained on the data
(`--vocab`, default 8192: 88.1M parameters), fp32. The transformers model starts from puyu's initial weights
(puyu's state dict *is* the Llama layout), so the two runs compute the same numbers: the script prints the
first-step loss difference (~1e-7) and the largest over all steps. Same data: `TokenDataset` windows (same
seed: the same windows in the same order) from a token folder built once under `--workdir` from
`--data`/tinyshakespeare/input.txt, one document per blank-line-separated speech (random words if the file
is absent, said loudly). Windows are packed with the document mask: puyu builds its block-diagonal mask and
per-document positions; transformers gets the same `position_ids` and builds the same packed-sequence mask
from them. Same optimizer: fused AdamW, lr 3e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on matrices
only, clipping at 1.0, the same warmup-cosine multipliers. `torch.set_num_threads(--threads)` for both.

How it is timed: one process. By default the two alternate step by step: each repetition is one `pretrain`
run, and after each of its steps (once the loop has written that step's metrics line) one transformers step
runs, so step k of both sees the same machine load (`--alternate-runs` alternates whole runs instead, the
order flipping each repetition). Each repetition is `--warmup` + `--steps` steps from the initial weights;
warm-up steps are dropped. puyu's step time is the wall time between consecutive lines of the run's
`metrics.jsonl` (each line's `time` is taken at the end of a step, so the difference is one whole loop
iteration: data, forward, backward, clipping, optimizer, logging) less the transformers step run in between;
step 1 has no earlier line and is always warm-up. The loop's own in-step timer (behind its `tokens_per_sec`)
is printed beside it. The transformers step is timed around the same work (data included). Figures are
medians over all timed steps; "paired" is the median of the per-step ratios, "fastest" the ratio of the least
disturbed steps. MFU = tokens/s × `model_flops_per_token(config, seq_len)` / the fp32 matmul peak, the loop's
own `measure_peak_flops(torch.float32, "cpu")`, taken as the best of measurements before, between and after
the repetitions (on a shared machine one measurement can be caught by other load).

`--profile` then runs a few steps of each under `torch.profiler`, in turn (puyu: the loop's own pieces,
`build_model`, `BatchSource`, `causal_lm_loss`, `clip_gradients`, `build_optimizer`, as `run_training` calls
them), and times the usual suspects alone on this step's shapes: SDPA with the document mask vs `is_causal`,
building the mask, the float32 cross-entropy over the vocabulary, the fused AdamW step, gradient clipping,
the loop's collectives without a process group.

    .venv/bin/python benchmarks/train_throughput.py --profile --json runs/bench/train_throughput.json
    .venv/bin/python benchmarks/train_throughput.py --quick      # one short repetition (~30 s)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import math
import random
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from machine import machine_info

IMPLS = ("puyu", "transformers")
PRESET = "internlm2-100m"


# ---- data --------------------------------------------------------------------------------------------------------


def _documents(data_dir: Path, seed: int) -> tuple[list[str], str]:
    """tinyshakespeare split into speeches (blank-line separated), or random words when the file is absent."""
    path = data_dir / "tinyshakespeare" / "input.txt"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        docs = [d.strip() for d in text.split("\n\n") if d.strip()]
        return docs, f"{path} ({len(docs)} speeches, {len(text):,} characters)"
    rng = random.Random(seed)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(1, 9))) for _ in range(5000)]
    docs = [" ".join(rng.choices(words, k=rng.randint(10, 80))) for _ in range(8000)]
    return docs, f"RANDOM TEXT ({path} not found): {len(docs)} documents of random words"


def ensure_data(data_dir: Path, workdir: Path, vocab: int, seed: int) -> tuple[Path, Path, str]:
    """(token folder, tokenizer folder, description), built once under `workdir` and reused."""
    from puyu.data.tokenize import SourceSpec, TokenizeConfig, tokenize_documents
    from puyu.tokenizer.train import train_bpe

    docs, description = _documents(data_dir, seed)
    kind = "random" if description.startswith("RANDOM") else "tinyshakespeare"
    if kind == "random":
        print(f"WARNING: {description}; throughput is unaffected, losses are meaningless", flush=True)
    folder = workdir / f"train-throughput-{kind}-bpe{vocab}"
    stamp = folder / "bench_stamp.json"
    want = {"source": description, "vocab": vocab, "seed": seed}
    tokens, tokenizer = folder / "tokens", folder / "tokenizer"
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == want:
        print(f"reusing {folder}")
        return tokens, tokenizer, description
    print(f"building the token folder {folder} from {description} ...", flush=True)
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "text").mkdir(parents=True)
    (folder / "text" / "all.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    train_bpe([folder / "text" / "all.txt"], vocab, tokenizer, show_progress=False)
    rows = "".join(json.dumps({"id": f"{kind}-{i:05d}", "text": d}) + "\n" for i, d in enumerate(docs))
    (folder / "text" / "docs.jsonl").write_text(rows, encoding="utf-8")
    tokenize_documents(
        TokenizeConfig(
            tokenizer=str(tokenizer),
            output=str(tokens),
            sources=[SourceSpec(name=kind, paths=[str(folder / "text" / "docs.jsonl")])],
        ),
        progress=False,
    )
    stamp.write_text(json.dumps(want) + "\n", encoding="utf-8")
    return tokens, tokenizer, description


# ---- the two loops -----------------------------------------------------------------------------------------------


@dataclass
class Settings:
    tokens: Path
    tokenizer: Path
    workdir: Path
    vocab: int
    micro_batch: int
    seq_len: int
    document_mask: bool
    seed: int
    peak: float
    compile: bool = False


@dataclass
class RepResult:
    seconds: list[float]  # every step, warm-up included (puyu's step 1: NaN, no earlier metrics line)
    losses: list[float]
    inloop_seconds: list[float] = field(default_factory=list)  # puyu only: the loop's own step timer


def train_config(s: Settings, run_dir: Path, max_steps: int) -> Any:
    from puyu.train.config import DataSection, DataSource, ModelSection, TrainConfig
    from puyu.train.optimizer import OptimizerConfig
    from puyu.train.schedule import ScheduleConfig

    return TrainConfig(
        run_dir=str(run_dir),
        model=ModelSection(preset=PRESET, overrides={"vocab_size": s.vocab}, tokenizer=str(s.tokenizer)),
        data=DataSection(train=[DataSource(str(s.tokens))], seq_len=s.seq_len, document_mask=s.document_mask),
        optimizer=OptimizerConfig(lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8, implementation="fused"),
        schedule=ScheduleConfig(kind="cosine", warmup_steps=2, min_lr_ratio=0.1),
        max_steps=max_steps,
        micro_batch_size=s.micro_batch,
        grad_accum=1,
        max_grad_norm=1.0,
        dtype="float32",
        device="cpu",
        distributed="none",
        compile=s.compile,
        seed=s.seed,
        log_every=1,
        eval_every=0,
        checkpoint_every=0,
        keep_checkpoints=1,
        peak_flops=s.peak,  # measured once here, so each run does not spend 2 s measuring it again
        progress=False,
    )


def inloop_step_seconds(values: list[float], step_tokens: int, window: int = 20) -> list[float]:
    """Per-step seconds recovered from the loop's logged `tokens_per_sec` (a mean over the last `window` steps)."""
    seconds: list[float] = []
    previous = 0.0
    for k, tokens_per_sec in enumerate(values, start=1):
        current = min(k, window) * step_tokens / tokens_per_sec  # seconds of the last min(k, window) steps
        seconds.append(current - previous + (seconds[k - 1 - window] if k > window else 0.0))
        previous = current
    return seconds


@contextlib.contextmanager
def after_each_logged_step(hook: Callable[[], float]) -> Iterator[list[float]]:
    """Call `hook` after the loop writes each train metrics line; yields the seconds each call took.

    The loop builds its `MetricsLogger` from `puyu.train.loop`'s namespace, so a subclass placed there sees every
    `log` call; the hook runs after the line (and its `time`) is written and before the next iteration starts its
    own timer, so neither of puyu's step timings includes it once its duration is subtracted from the interval.
    """
    from puyu.train import loop

    base = loop.MetricsLogger
    durations: list[float] = []

    class Logger(base):  # type: ignore[misc, valid-type]
        def log(self, step: int, metrics: dict[str, float], split: str = "train") -> None:
            super().log(step, metrics, split)
            if split == "train":
                durations.append(hook())

    loop.MetricsLogger = Logger  # type: ignore[misc]
    try:
        yield durations
    finally:
        loop.MetricsLogger = base  # type: ignore[misc]


def run_puyu(s: Settings, steps: int, rep: int, between: Callable[[], float] | None = None) -> RepResult:
    """`pretrain` for `steps` steps; with `between`, that call runs after each step (see `after_each_logged_step`)."""
    from puyu.train.loop import pretrain
    from puyu.train.metrics import read_metrics

    run_dir = s.workdir / "train-throughput-runs" / f"puyu-{rep}"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a run folder with checkpoints would resume instead of starting fresh
    hook = after_each_logged_step(between) if between is not None else contextlib.nullcontext([])
    with hook as interleaved:
        pretrain(train_config(s, run_dir, steps))
    records = [r for r in read_metrics(run_dir) if r.get("split") == "train"]
    shutil.rmtree(run_dir)
    if [r["step"] for r in records] != list(range(1, steps + 1)):
        raise RuntimeError(f"expected one metrics line per step, got steps {[r['step'] for r in records]}")
    times = [r["time"] for r in records]
    intervals = [b - a for a, b in itertools.pairwise(times)]
    if interleaved:
        intervals = [t - d for t, d in zip(intervals, interleaved, strict=False)]
    return RepResult(
        seconds=[math.nan, *intervals],
        losses=[r["loss"] for r in records],
        inloop_seconds=inloop_step_seconds([r["tokens_per_sec"] for r in records], s.micro_batch * s.seq_len),
    )


def initial_state_dict(s: Settings) -> dict[str, torch.Tensor]:
    """The weights `pretrain` starts from: the loop's own `build_model`, same config and seed."""
    from puyu.train.distributed import init_distributed, seed_everything
    from puyu.train.loop import build_model

    config = train_config(s, s.workdir / "unused", 1)
    seed_everything(config.seed)
    _, model = build_model(config, init_distributed(config.device))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def hf_model(s: Settings, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    import transformers

    from puyu.model.config import ModelConfig

    hf_config = transformers.LlamaConfig(**ModelConfig.from_name(PRESET, vocab_size=s.vocab).to_hf(family="llama"))
    hf_config._attn_implementation = "sdpa"
    # Training needs no KV cache; with one, transformers also ignores packed position_ids and lets
    # documents attend to each other (it only builds the packed-sequence mask when there is no cache).
    hf_config.use_cache = False
    model = transformers.LlamaForCausalLM(hf_config).to(torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"Llama layout mismatch: missing {missing}, unexpected {unexpected}")
    return model.train()


def lm_batches(s: Settings) -> Iterator[Any]:
    """The batches puyu's loop makes, in its order: its dataset, collation and label/position rules."""
    from puyu.data.dataset import TokenDataset, collate_windows
    from puyu.train.objectives import lm_batch

    iterator = iter(TokenDataset(s.tokens, s.seq_len, "train", seed=s.seed))
    while True:
        yield lm_batch(collate_windows([next(iterator) for _ in range(s.micro_batch)]), s.document_mask)


def transformers_step(s: Settings, state: dict[str, torch.Tensor], max_steps: int) -> Callable[[], float]:
    """One training iteration of the plain transformers loop, as a `() -> loss` call."""
    from puyu.train.schedule import ScheduleConfig, lr_multiplier

    model = hf_model(s, state)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=3e-4,
        betas=(0.9, 0.95),
        eps=1e-8,
        fused=True,
    )
    schedule = ScheduleConfig(kind="cosine", warmup_steps=2, min_lr_ratio=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, max_steps, schedule))
    params = list(model.parameters())
    batches = lm_batches(s)

    def step() -> float:
        batch = next(batches)
        loss = model(
            input_ids=batch.input_ids,
            position_ids=batch.position_ids,  # per-document positions: transformers builds the packed mask
            labels=batch.labels,
            shift_labels=batch.labels,  # already the next tokens (as puyu's), so the loss does not shift them
        ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def timed(step: Callable[[], float], result: RepResult) -> Callable[[], float]:
    """`step` timed: its seconds and loss go into `result`; returns the seconds."""

    def run() -> float:
        started = time.perf_counter()
        loss = step()
        seconds = time.perf_counter() - started
        result.seconds.append(seconds)
        result.losses.append(loss)
        return seconds

    return run


def run_transformers(s: Settings, steps: int, state: dict[str, torch.Tensor]) -> RepResult:
    result = RepResult(seconds=[], losses=[])
    step = timed(transformers_step(s, state, steps), result)
    for _ in range(steps):
        step()
    return result


def run_interleaved(s: Settings, steps: int, rep: int, state: dict[str, torch.Tensor]) -> tuple[RepResult, RepResult]:
    """One `pretrain` run with a transformers step after each of its steps: both see the same machine load."""
    hf = RepResult(seconds=[], losses=[])
    hf_step = timed(transformers_step(s, state, steps), hf)
    return run_puyu(s, steps, rep, between=hf_step), hf


def puyu_step(s: Settings, max_steps: int) -> Callable[[], float]:
    """The body of `run_training`'s loop from the loop's own pieces, for the profiler only (the timed runs go
    through `pretrain`): no logging, checkpoints or progress bar, which the profile would only blur."""
    from puyu.data.dataset import TokenDataset
    from puyu.train.distributed import all_reduce, init_distributed, seed_everything
    from puyu.train.loop import BatchSource, build_model, clip_gradients
    from puyu.train.objectives import causal_lm_loss, loss_scale
    from puyu.train.optimizer import build_optimizer
    from puyu.train.schedule import build_scheduler

    config = train_config(s, s.workdir / "unused", max_steps)
    info = init_distributed(config.device)
    seed_everything(config.seed)
    _, model = build_model(config, info)
    batches = BatchSource(TokenDataset(s.tokens, s.seq_len, "train", seed=s.seed), config)
    optimizer = build_optimizer(model, config.optimizer)
    scheduler = build_scheduler(optimizer, max_steps, config.schedule)
    params = [p for p in model.parameters() if p.requires_grad]
    forward = torch.compile(model) if config.compile else model

    def step() -> float:
        (batch,) = batches.next_step(info.device)
        targets = int(all_reduce(torch.tensor(float(batch.num_targets))).item())
        loss = causal_lm_loss(forward, batch)
        (loss * loss_scale(targets, info.world_size)).backward()
        clip_gradients(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        batches.state_dict(info)
        return float(all_reduce(loss.detach()).item()) / targets

    return step


# ---- profile -----------------------------------------------------------------------------------------------------


ELEMENTWISE = {
    "aten::mul", "aten::mul_", "aten::add", "aten::add_", "aten::sub", "aten::div", "aten::neg", "aten::pow",
    "aten::rsqrt", "aten::mean", "aten::sum", "aten::silu", "aten::silu_backward", "aten::where", "aten::cos",
    "aten::sin", "aten::exp",
}  # fmt: skip
MEMORY = {
    "aten::copy_", "aten::fill_", "aten::zero_", "aten::cat", "aten::clone", "aten::embedding_dense_backward",
    "aten::index_select", "aten::index_put_", "aten::empty", "aten::empty_strided", "aten::zeros", "aten::ones",
}  # fmt: skip
MASK = {"aten::eq", "aten::ne", "aten::cumsum", "aten::tril", "aten::bitwise_and", "aten::le", "aten::diff"}


def op_category(name: str) -> str:
    if "scaled_dot_product" in name:
        return "attention kernel (SDPA fwd+bwd)"
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"):
        return "matmuls (projections, lm_head; fwd+bwd)"
    if "log_softmax" in name or "nll_loss" in name:
        return "cross-entropy (log_softmax + nll)"
    if "adam" in name.lower():
        return "optimizer (fused AdamW)"
    if name.startswith("aten::_foreach") or name == "aten::linalg_vector_norm":
        return "gradient clipping (foreach norm/mul)"
    if name in ELEMENTWISE:
        return "elementwise (norms, rope, SwiGLU, residuals; fwd+bwd)"
    if name in MEMORY:
        return "copies and fills (cat, copy_, fill_, grads)"
    if name in MASK:
        return "masks and labels (eq, cumsum, tril, and)"
    return "the rest (views, autograd bookkeeping, Python)"


def run_profile(s: Settings, state: dict[str, torch.Tensor], active: int) -> dict[str, Any]:
    """Self CPU ms per step of every op, the two loops' steps profiled in turn (after one warm-up step each)."""
    from torch.profiler import ProfilerActivity, profile

    print(f"profiling {active} steps of each loop, in turn ...", flush=True)
    gc.collect()
    steps = {"puyu": puyu_step(s, active + 1), "transformers": transformers_step(s, state, active + 1)}
    for impl in IMPLS:
        steps[impl]()
    ops: dict[str, dict[str, float]] = {impl: {} for impl in IMPLS}
    wall: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for _ in range(active):
        for impl in IMPLS:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                started = time.perf_counter()
                steps[impl]()
                wall[impl].append(1000 * (time.perf_counter() - started))
            for event in prof.key_averages():
                ops[impl][event.key] = ops[impl].get(event.key, 0.0) + event.self_cpu_time_total / 1000 / active
    del steps
    gc.collect()
    extra = suspects(s, state)
    step_ms = {impl: statistics.median(wall[impl]) for impl in IMPLS}
    print_profile(ops, extra, step_ms)
    categories: dict[str, dict[str, float]] = {}
    for impl in IMPLS:
        for op, ms in ops[impl].items():
            bucket = categories.setdefault(op_category(op), {i: 0.0 for i in IMPLS})
            bucket[impl] += ms
    return {"categories_ms": categories, "suspects_ms": extra, "profiled_step_ms": step_ms, "ops_ms": ops}


def time_ms(*fns: Callable[[], Any], repeats: int = 5) -> list[float]:
    """Median wall ms of each of `fns` after one warm-up call, the calls taken in turn (same machine load)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times, strict=True):
            started = time.perf_counter()
            fn()
            record.append(time.perf_counter() - started)
    return [1000 * statistics.median(record) for record in times]


def suspects(s: Settings, state: dict[str, torch.Tensor]) -> dict[str, float]:
    """ms per training step of the pieces suspected of slowing the loop, each timed alone on this step's shapes."""
    import torch.nn.functional as F

    from puyu.model.attention_mask import document_causal_mask
    from puyu.model.config import ModelConfig
    from puyu.train.distributed import all_reduce

    config = ModelConfig.from_name(PRESET, vocab_size=s.vocab)
    layers, heads, kv_heads, dim = config.num_layers, config.num_heads, config.num_kv_heads, config.head_dim or 0
    batch = next(lm_batches(s))
    b, t = batch.input_ids.shape
    positions = batch.position_ids if batch.position_ids is not None else torch.arange(t).expand(b, -1)
    mask = document_causal_mask(positions)
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(b, heads, t, dim, generator=generator, requires_grad=True)
    k = torch.randn(b, kv_heads, t, dim, generator=generator, requires_grad=True)
    v = torch.randn(b, kv_heads, t, dim, generator=generator, requires_grad=True)

    def attention(**kwargs: Any) -> Callable[[], None]:
        def run() -> None:
            for _ in range(layers):
                F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kwargs).sum().backward()

        return run

    masked, causal = time_ms(attention(attn_mask=mask), attention(is_causal=True))
    out: dict[str, float] = {
        "attention fwd+bwd, document mask (all layers)": masked,
        "attention fwd+bwd, is_causal (all layers)": causal,
        "building the document mask (once per step)": time_ms(lambda: document_causal_mask(positions))[0],
    }
    logits = torch.randn(b, t, s.vocab, generator=generator, requires_grad=True)

    def cross_entropy() -> None:
        F.cross_entropy(logits.float().flatten(0, 1), batch.labels.flatten(), reduction="sum").backward()

    out["cross-entropy fwd+bwd over the vocabulary (fp32 logits)"] = time_ms(cross_entropy)[0]
    params = [torch.nn.Parameter(w.detach().clone()) for w in state.values()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = torch.optim.AdamW(params, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    out["fused AdamW step (all parameters)"] = time_ms(optimizer.step)[0]
    out["gradient clipping (clip_grad_norm_)"] = time_ms(lambda: torch.nn.utils.clip_grad_norm_(params, 1.0))[0]
    scalar = torch.tensor(1.0)
    out["the loop's two all_reduce calls without a process group"] = time_ms(
        lambda: (all_reduce(scalar).item(), all_reduce(scalar).item()), repeats=50
    )[0]
    return out


def print_profile(ops: dict[str, dict[str, float]], extra: dict[str, float], steps: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(110, Console().width))
    table = Table(title="Where a step's time goes: self CPU ms per step under torch.profiler")
    for name in ("category", *IMPLS):
        table.add_column(name, justify="left" if name == "category" else "right", no_wrap=True)
    categories = sorted({op_category(op) for impl in IMPLS for op in ops[impl]})
    for category in categories:
        table.add_row(
            category,
            *(f"{sum(ms for op, ms in ops[impl].items() if op_category(op) == category):.0f}" for impl in IMPLS),
        )
    table.add_row("[bold]profiled step (wall, median)[/bold]", *(f"{steps[impl]:.0f}" for impl in IMPLS))
    console.print(table)
    top = sorted({op for impl in IMPLS for op in ops[impl]}, key=lambda op: -max(ops[i].get(op, 0) for i in IMPLS))
    table = Table(title="Top ops, self CPU ms per step")
    for name in ("op", *IMPLS):
        table.add_column(name, justify="left" if name == "op" else "right", no_wrap=True)
    for op in top[:15]:
        table.add_row(op[:70], *(f"{ops[impl].get(op, 0.0):.1f}" for impl in IMPLS))
    console.print(table)
    table = Table(title="Suspects, each timed alone on this step's shapes (ms per training step)")
    table.add_column("piece", no_wrap=True)
    table.add_column("ms", justify="right")
    for name, ms in extra.items():
        table.add_row(name, f"{ms:.2f}")
    console.print(table)


# ---- report ------------------------------------------------------------------------------------------------------


def measure_peak() -> float:
    """The loop's own MFU denominator: `measure_peak_flops(torch.float32, "cpu")` (2048² matmuls, 2 s)."""
    from puyu.train.metrics import measure_peak_flops

    return measure_peak_flops(torch.float32, "cpu")


def summarize(reps: dict[str, list[RepResult]], warmup: int, step_tokens: int, step_flops: float, peak: float) -> Any:
    timed = {impl: [x for r in reps[impl] for x in r.seconds[warmup:]] for impl in IMPLS}
    summary: dict[str, Any] = {}
    for impl, seconds in timed.items():
        median, fastest = statistics.median(seconds), min(seconds)
        summary[impl] = {
            "tokens_per_s": step_tokens / median,
            "ms_per_step": 1000 * median,
            "min_ms_per_step": 1000 * fastest,
            "max_ms_per_step": 1000 * max(seconds),
            "mfu": step_flops / median / peak,
            "fastest_step_mfu": step_flops / fastest / peak,
            "timed_steps": len(seconds),
        }
    puyu, hf = summary["puyu"], summary["transformers"]
    summary["ratio_puyu_over_transformers"] = puyu["tokens_per_s"] / hf["tokens_per_s"]
    summary["ratio_fastest_puyu_over_transformers"] = hf["min_ms_per_step"] / puyu["min_ms_per_step"]
    # Step k of both, run back to back when interleaved: the ratio least affected by other load.
    paired = [
        h / p
        for pr, hr in zip(reps["puyu"], reps["transformers"], strict=True)
        for p, h in zip(pr.seconds[warmup:], hr.seconds[warmup:], strict=True)
    ]
    summary["ratio_paired_median"] = statistics.median(paired)
    summary["ratio_paired"] = paired
    inloop = [x for r in reps["puyu"] for x in r.inloop_seconds[warmup:]]
    puyu["inloop_ms_per_step"] = 1000 * statistics.median(inloop)
    pairs = list(zip(reps["puyu"], reps["transformers"], strict=True))
    summary["first_step_loss"] = {"puyu": pairs[0][0].losses[0], "transformers": pairs[0][1].losses[0]}
    summary["first_step_loss_abs_diff"] = max(abs(p.losses[0] - h.losses[0]) for p, h in pairs)
    summary["all_steps_loss_abs_diff"] = max(
        abs(a - b) for p, h in pairs for a, b in zip(p.losses, h.losses, strict=True)
    )
    return summary


def print_table(summary: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in ("loop", "tokens/s", "ms/step", "min–max ms/step", "MFU", "MFU fastest step"):
        table.add_column(name, justify="left" if name == "loop" else "right", no_wrap=True)
    for impl in IMPLS:
        s = summary[impl]
        table.add_row(
            impl,
            f"{s['tokens_per_s']:.1f}",
            f"{s['ms_per_step']:.0f}",
            f"{s['min_ms_per_step']:.0f}–{s['max_ms_per_step']:.0f}",
            f"{100 * s['mfu']:.1f}%",
            f"{100 * s['fastest_step_mfu']:.1f}%",
        )
    table.add_row(
        "[bold]puyu/transformers[/bold]",
        f"{summary['ratio_puyu_over_transformers']:.2f}x",
        f"paired: {summary['ratio_paired_median']:.2f}x",
        f"fastest: {summary['ratio_fastest_puyu_over_transformers']:.2f}x",
        "",
        "",
    )
    Console(width=max(110, Console().width)).print(table)


def _plain(value: Any) -> Any:
    """NaN as null, so the JSON stays standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder holding tinyshakespeare/")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench"), help="token folder and run folders")
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per repetition (default 4)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first in each repetition (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of each loop, alternating (default 5)")
    parser.add_argument("--quick", action="store_true", help="one repetition of 2 timed steps (a smoke test)")
    parser.add_argument("--micro-batch", type=int, default=4, help="sequences per step (default 4)")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (default 256)")
    parser.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary = model vocab_size (default 8192)")
    parser.add_argument("--compile", action="store_true", help="puyu with compile: true (transformers stays eager)")
    parser.add_argument("--no-document-mask", action="store_true", help="plain causal attention in both loops")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    parser.add_argument(
        "--alternate-runs",
        action="store_true",
        help="alternate whole runs (puyu run, transformers run, ...) instead of single steps",
    )
    parser.add_argument("--profile", action="store_true", help="afterwards, profile a few steps of each loop")
    parser.add_argument("--json", type=Path, help="write every step time and the summary here")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.repeats = 2, 1, 1
    if min(args.steps, args.warmup, args.repeats, args.micro_batch, args.threads) < 1 or args.seq_len < 2:
        parser.error("--steps, --warmup, --repeats, --micro-batch and --threads must be at least 1, --seq-len 2")

    from puyu.model.config import ModelConfig
    from puyu.train.metrics import matmul_parameters, model_flops_per_token

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    tokens, tokenizer, source = ensure_data(args.data, args.workdir, args.vocab, args.seed)
    config = ModelConfig.from_name(PRESET, vocab_size=args.vocab)
    print(f"measuring the fp32 matmul peak on {args.threads} threads ...", flush=True)
    peaks = [measure_peak()]
    s = Settings(
        tokens, tokenizer, args.workdir, args.vocab, args.micro_batch, args.seq_len, not args.no_document_mask,
        args.seed, peaks[0], args.compile,
    )  # fmt: skip
    state = initial_state_dict(s)
    parameters = sum(v.numel() for v in state.values())
    flops_per_token = model_flops_per_token(config, args.seq_len)
    step_tokens = args.micro_batch * args.seq_len
    step_flops = flops_per_token * step_tokens
    print(
        f"{PRESET} with vocab {args.vocab}: {parameters / 1e6:.1f}M parameters, "
        f"{flops_per_token / 1e6:.0f} MFLOP/token, {step_tokens} tokens and {step_flops / 1e9:.0f} GFLOP per step",
        flush=True,
    )

    total = args.warmup + args.steps
    reps: dict[str, list[RepResult]] = {impl: [] for impl in IMPLS}

    def show(rep: int, impl: str, result: RepResult) -> None:
        print(
            f"[{rep + 1}/{args.repeats}] {impl:12s} steps (s) {' '.join(f'{x:.2f}' for x in result.seconds)}  "
            f"→ {step_tokens / statistics.median(result.seconds[args.warmup :]):.0f} tokens/s; "
            f"loss {result.losses[0]:.6f} … {result.losses[-1]:.6f}",
            flush=True,
        )

    for rep in range(args.repeats):
        gc.collect()
        if args.alternate_runs:
            for impl in IMPLS if rep % 2 == 0 else IMPLS[::-1]:
                result = run_puyu(s, total, rep) if impl == "puyu" else run_transformers(s, total, state)
                reps[impl].append(result)
                show(rep, impl, result)
                gc.collect()
        else:
            puyu, hf = run_interleaved(s, total, rep, state)
            for impl, result in (("puyu", puyu), ("transformers", hf)):
                reps[impl].append(result)
                show(rep, impl, result)
        peaks.append(measure_peak())  # between repetitions: the peak is the least disturbed of these
    with contextlib.suppress(OSError):
        (args.workdir / "train-throughput-runs").rmdir()  # the run folders are gone; drop their parent if empty
    peak = max(peaks)
    summary = summarize(reps, args.warmup, step_tokens, step_flops, peak)
    variant = "puyu compile: true, " if args.compile else ""
    print_table(
        summary,
        f"Training step, {PRESET} vocab {args.vocab} ({parameters / 1e6:.1f}M), fp32, {args.micro_batch}×"
        f"{args.seq_len}, {'document mask' if s.document_mask else 'causal'}, {variant}{args.threads} threads, "
        f"median of {summary['puyu']['timed_steps']} steps; MFU against {peak / 1e9:.0f} GFLOP/s",
    )
    print(
        f"puyu's in-loop step timer: {summary['puyu']['inloop_ms_per_step']:.0f} ms/step median "
        f"(metrics-line interval {summary['puyu']['ms_per_step']:.0f} ms)"
    )
    first = summary["first_step_loss"]
    print(
        f"first-step loss: puyu {first['puyu']:.6f}, transformers {first['transformers']:.6f}, "
        f"|diff| {summary['first_step_loss_abs_diff']:.1e} (all steps {summary['all_steps_loss_abs_diff']:.1e})"
    )
    print(
        f"fp32 matmul peak (measure_peak_flops, {len(peaks)} measurements): best {peak / 1e9:.0f}, "
        f"median {statistics.median(peaks) / 1e9:.0f}, worst {min(peaks) / 1e9:.0f} GFLOP/s"
    )
    print(f"data: {source}")

    profile = run_profile(s, state, active=2) if args.profile else None
    print(f"total {time.perf_counter() - started:.0f} s")

    if args.json:
        report = {
            "benchmark": "train_throughput",
            "preset": PRESET,
            "vocab_size": args.vocab,
            "parameters": parameters,
            "matmul_parameters": matmul_parameters(config),
            "flops_per_token": flops_per_token,
            "micro_batch": args.micro_batch,
            "seq_len": args.seq_len,
            "document_mask": s.document_mask,
            "dtype": "float32",
            "warmup": args.warmup,
            "steps": args.steps,
            "repeats": args.repeats,
            "peak_flops": peak,
            "peak_flops_measurements": peaks,
            "compile": args.compile,
            "interleaved": not args.alternate_runs,
            "data": source,
            "machine": machine_info(("torch", "transformers"), torch_threads=args.threads),
            "summary": summary,
            "step_seconds": {impl: [r.seconds for r in reps[impl]] for impl in IMPLS},
            "puyu_inloop_step_seconds": [r.inloop_seconds for r in reps["puyu"]],
            "losses": {impl: [r.losses for r in reps[impl]] for impl in IMPLS},
            "profile": profile,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_plain(report), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
