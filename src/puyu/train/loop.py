"""The training loop: one loop for pretraining, continued pretraining and (later) fine-tuning.

Read top to bottom: set up the processes → build or load the model → open the data → wrap for DDP/FSDP →
optimizer and schedule → resume from the latest checkpoint → steps (micro-batches with accumulation,
clipping, optimizer, schedule) with logging, validation and checkpoints → final checkpoint and plots.
What differs between pretraining and fine-tuning is the batch source and the loss function.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from puyu.configuration import to_dict
from puyu.data.dataset import TokenDataset, collate_windows
from puyu.data.shards import read_manifest, tokenizer_sha256
from puyu.errors import PuyuError
from puyu.io import atomic_write_text
from puyu.model.checkpoint import load_model
from puyu.model.config import ModelConfig
from puyu.model.decoder import CausalLM
from puyu.model.init import random_model
from puyu.tokenizer import Tokenizer
from puyu.train.checkpoint import StopSignal, TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from puyu.train.config import TrainConfig
from puyu.train.distributed import DistInfo, all_reduce, init_distributed, no_sync, seed_everything, wrap_model
from puyu.train.log_lines import train_log_line
from puyu.train.metrics import MetricsLogger, Throughput, measure_peak_flops, model_flops_per_token
from puyu.train.objectives import Batch, causal_lm_loss, lm_batch, loss_scale
from puyu.train.optimizer import build_optimizer
from puyu.train.schedule import build_scheduler

LossFn = Callable[[torch.nn.Module, Batch], torch.Tensor]


class StepHook(Protocol):
    """Something run on the main process after every optimizer step (e.g. sample generation while fine-tuning).

    It gets the plain model (not the DDP/compile wrapper) and the run's metric log, and must leave the model
    in train mode.
    """

    def after_step(self, step: int, model: CausalLM, logger: MetricsLogger) -> None: ...


@dataclass
class TrainResult:
    """What a run ended with."""

    run_dir: Path
    step: int
    train_loss: float | None
    val_loss: float | None
    tokens_per_sec: float | None
    mfu: float | None
    stopped_early: bool


def pretrain(config: TrainConfig) -> TrainResult:
    """Pretrain (or continue pretraining) a decoder on token shards; resumes from `run_dir` if it holds checkpoints.

    Args:
        config: the run's settings.
    """
    info = init_distributed(config.device)
    seed_everything(config.seed)
    run_dir = Path(config.run_dir)
    tokenizer, model = build_model(config, info)
    sha = tokenizer_sha256(tokenizer)
    check_data(config, model.config, tokenizer, sha)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(to_dict(config), indent=2) + "\n")
        tokenizer.save_pretrained(run_dir / "tokenizer")
    train_data = TokenDataset(
        [(s.path, s.weight) for s in config.data.train],
        config.data.seq_len,
        "train",
        seed=config.seed,
        rank=info.rank,
        world_size=info.world_size,
        expect_tokenizer_sha256=sha,
    )
    val_data = open_validation(config, info, sha)
    batches = BatchSource(train_data, config)
    return run_training(config, model, batches, causal_lm_loss, info, val_data=val_data)


def run_training(
    config: TrainConfig,
    model: CausalLM,
    batches: BatchSource,
    loss_fn: LossFn,
    info: DistInfo,
    val_data: TokenDataset | None = None,
    hooks: Sequence[StepHook] = (),
) -> TrainResult:
    """The loop proper, shared by every objective: `batches` yields micro-batches, `loss_fn` sums their loss.

    A `loss_fn` with a `pop_metrics() -> dict[str, float]` method (e.g. DPO's rewards and margin) has those
    metrics added to each step's train log. When some parameters are frozen (adapters, frozen embeddings),
    checkpoints hold only the trainable ones: the frozen rest is rebuilt from the base model on resume.
    """
    run_dir = Path(config.run_dir)
    compute_dtype = resolve_compute_dtype(config.dtype, info.device)
    model.activation_checkpointing = config.activation_checkpointing
    # FSDP2 keeps bf16 parameter copies for compute and reduces gradients in fp32; DDP relies on autocast alone.
    low_precision = compute_dtype if compute_dtype != torch.float32 else None
    wrapped = wrap_model(model, info, config.distributed, mixed_precision_dtype=low_precision)
    if config.compile:
        wrapped = torch.compile(wrapped)
    optimizer = build_optimizer(wrapped, config.optimizer)
    scheduler = build_scheduler(optimizer, config.max_steps, config.schedule)

    trainable_only = any(not p.requires_grad for p in model.parameters())
    loss_metrics = getattr(loss_fn, "pop_metrics", None)
    state = TrainState()
    latest = latest_checkpoint(run_dir)
    if latest is not None:
        state = load_checkpoint(latest, wrapped, optimizer, scheduler, trainable_only=trainable_only)
        batches.load_state_dict(state.data, info)
        if info.is_main:
            print(f"resuming from {latest} (step {state.step})")

    logger = MetricsLogger(run_dir, tensorboard=config.tensorboard, enabled=info.is_main)
    flops_per_token = model_flops_per_token(model.config, config.data.seq_len)
    # Best of three short runs: a single measurement on a busy machine can come out several times too low.
    peak = config.peak_flops or max(measure_peak_flops(compute_dtype, info.device, seconds=0.7) for _ in range(3))
    throughput = Throughput()
    autocast = make_autocast(compute_dtype, info.device)
    params = [p for p in wrapped.parameters() if p.requires_grad]
    train_loss = val_loss = None
    stopped = False
    bar = tqdm(
        total=config.max_steps,
        initial=state.step,
        desc="train",
        unit="step",
        disable=not (config.progress and info.is_main),
    )
    loop_started, steps_here = time.perf_counter(), 0
    with StopSignal() as stop:
        while state.step < config.max_steps:
            started = time.perf_counter()
            wrapped.train()
            micro = batches.next_step(info.device)
            local = torch.tensor(float(sum(b.num_targets for b in micro)), device=info.device)
            global_targets = int(all_reduce(local).item())
            scale = loss_scale(global_targets, info.world_size)
            loss_sum = torch.zeros((), device=info.device)
            for i, batch in enumerate(micro):
                # Both passes inside no_sync: DDP reads it in forward, FSDP2 in backward.
                with no_sync(wrapped, active=i < len(micro) - 1):
                    with autocast:
                        loss = loss_fn(wrapped, batch)
                    (loss * scale).backward()
                loss_sum += loss.detach().float()
            grad_norm = clip_gradients(params, config.max_grad_norm)
            lr = scheduler.get_last_lr()[0]  # the rate this update uses
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            state.step += 1
            step_tokens = sum(b.input_ids.numel() for b in micro) * info.world_size
            state.tokens += step_tokens
            state.data = batches.state_dict(info)
            train_loss = float(all_reduce(loss_sum).item()) / max(global_targets, 1)
            extra = loss_metrics() if loss_metrics is not None else {}
            throughput.update(step_tokens, time.perf_counter() - started)
            bar.update()
            bar.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}")
            steps_here += 1
            if config.log_every and (state.step % config.log_every == 0 or state.step == config.max_steps):
                logged = {
                    "loss": train_loss,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "tokens": state.tokens,
                    "tokens_per_sec": throughput.tokens_per_sec,
                    "mfu": throughput.mfu(flops_per_token, peak * info.world_size),
                    **extra,
                }
                logger.log(state.step, logged)
                if not config.progress and info.is_main:  # no bar: a line per logged step, as XTuner prints
                    per_step = (time.perf_counter() - loop_started) / steps_here
                    print(train_log_line(state.step, config.max_steps, per_step, logged), flush=True)
            if info.is_main:
                for hook in hooks:
                    hook.after_step(state.step, model, logger)
            if val_data is not None and config.eval_every and state.step % config.eval_every == 0:
                val_loss = evaluate(wrapped, val_data, config, info, autocast)
                logger.log(state.step, {"loss": val_loss, "ppl": math.exp(min(val_loss, 50))}, split="validation")
            last = state.step == config.max_steps
            due = config.checkpoint_every and state.step % config.checkpoint_every == 0
            stop_now = stop.agreed()  # read once, and the same on every rank: save and stop together
            if due or last or stop_now:
                save_checkpoint(
                    run_dir,
                    wrapped,
                    optimizer,
                    scheduler,
                    state,
                    model_config=model.config,
                    train_config=to_dict(config),
                    keep=config.keep_checkpoints,
                    trainable_only=trainable_only,
                )
            if stop_now:
                stopped = True
                break
    bar.close()
    logger.close()
    if info.is_main and not stopped:
        from puyu.train.plot import plot_run

        plot_run(run_dir)
    return TrainResult(
        run_dir=run_dir,
        step=state.step,
        train_loss=train_loss,
        val_loss=val_loss,
        tokens_per_sec=throughput.tokens_per_sec,
        mfu=throughput.mfu(flops_per_token, peak * info.world_size),
        stopped_early=stopped,
    )


# ---- pieces of the loop ------------------------------------------------------------------------


class BatchSource:
    """Micro-batches of language-modelling windows for one optimizer step, with a resumable position."""

    def __init__(self, dataset: TokenDataset, config: TrainConfig) -> None:
        self.dataset = dataset
        self.config = config
        self._iterator: Iterator[dict[str, torch.Tensor]] | None = None

    def next_step(self, device: torch.device) -> list[Batch]:
        if self._iterator is None:
            self._iterator = iter(self.dataset)
        size, accum = self.config.micro_batch_size, self.config.grad_accum
        micro = []
        for _ in range(accum):
            windows = collate_windows([next(self._iterator) for _ in range(size)])
            micro.append(lm_batch(windows, self.config.data.document_mask).to(device))
        return micro

    def state_dict(self, info: DistInfo) -> dict[str, Any]:
        """Every rank's position (each reads its own share of the windows); gathered so rank 0 can save them."""
        mine = self.dataset.state_dict()
        if not info.is_distributed:
            return {"ranks": [mine]}
        gathered: list[Any] = [None] * info.world_size
        torch.distributed.all_gather_object(gathered, mine)
        return {"ranks": gathered}

    def load_state_dict(self, state: dict[str, Any] | None, info: DistInfo) -> None:
        if not state:
            return
        ranks = state["ranks"]
        if len(ranks) != info.world_size:
            raise PuyuError(
                f"the checkpoint was written by {len(ranks)} processes; "
                f"resume with the same number, not {info.world_size}"
            )
        self.dataset.load_state_dict(ranks[info.rank])
        self._iterator = None


def build_model(config: TrainConfig, info: DistInfo) -> tuple[Tokenizer, CausalLM]:
    """The tokenizer and the float32 model: loaded from `init_from`, or a preset initialised with the run's seed."""
    section = config.model
    if section.init_from is not None:
        model = load_model(section.init_from, dtype="float32", device=info.device)
        return Tokenizer.from_pretrained(section.init_from), model.train()
    tokenizer_dir = section.tokenizer or _data_tokenizer_path(config)
    tokenizer = Tokenizer.from_pretrained(tokenizer_dir)
    model_config = ModelConfig.from_name(section.preset or "", **section.overrides)
    if tokenizer.vocab_size > model_config.vocab_size:
        raise PuyuError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model {model_config.vocab_size} embeddings "
            f"(set model.overrides.vocab_size: {tokenizer.vocab_size})"
        )
    model_config = model_config.replace(
        bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id
    )
    model = random_model(model_config, seed=config.seed, std=section.init_std, dtype=torch.float32)
    return tokenizer, model.to(info.device).train()


def _data_tokenizer_path(config: TrainConfig) -> str:
    manifest = read_manifest(config.data.train[0].path)
    path = manifest.get("tokenizer", {}).get("path")
    if not path or not Path(path).is_dir():
        raise PuyuError(
            f"{config.data.train[0].path}: the tokenizer it was made with ({path}) is not available; "
            "set model.tokenizer"
        )
    return path


def check_data(config: TrainConfig, model_config: ModelConfig, tokenizer: Tokenizer, sha: str) -> None:
    """Refuse shards made with another tokenizer, or holding ids the model has no embedding for."""
    for source in [*config.data.train, *(config.data.validation or [])]:
        manifest = read_manifest(source.path)
        info = manifest.get("tokenizer", {})
        if info.get("sha256") != sha:
            raise PuyuError(
                f"{source.path}: tokenized with a different tokenizer ({info.get('path')}, sha256 "
                f"{str(info.get('sha256'))[:12]}…) than the model's (sha256 {sha[:12]}…)"
            )
        if int(info.get("vocab_size", 0)) > model_config.vocab_size:
            raise PuyuError(f"{source.path}: token ids up to {info['vocab_size']} exceed the model's vocabulary")


def open_validation(config: TrainConfig, info: DistInfo, sha: str) -> TokenDataset | None:
    sources = config.data.validation or config.data.train
    folders = [(s.path, s.weight) for s in sources]
    if not all(read_manifest(path).get("splits", {}).get("validation") for path, _ in folders):
        return None
    return TokenDataset(
        folders,
        config.data.seq_len,
        "validation",
        seed=config.seed,
        rank=info.rank,
        world_size=info.world_size,
        loop=False,
        shuffle=False,
        expect_tokenizer_sha256=sha,
    )


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    data: TokenDataset,
    config: TrainConfig,
    info: DistInfo,
    autocast: contextlib.AbstractContextManager,
) -> float:
    """Mean token loss over the first `eval_batches` validation batches (the same ones every time)."""
    model.eval()
    total = torch.zeros((), device=info.device)
    targets = torch.zeros((), device=info.device)
    iterator = iter(data)
    for _ in range(config.eval_batches):
        windows = [w for _, w in zip(range(config.micro_batch_size), iterator, strict=False)]
        if not windows:
            break
        batch = lm_batch(collate_windows(windows), config.data.document_mask).to(info.device)
        with autocast:
            total += causal_lm_loss(model, batch).float()
        targets += batch.num_targets
    model.train()
    return float(all_reduce(total).item() / max(all_reduce(targets).item(), 1))


def clip_gradients(params: list[torch.nn.Parameter], max_norm: float | None) -> float:
    """Clip to `max_norm` (if set) and return the total gradient norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm is not None else float("inf"))
    if hasattr(norm, "full_tensor"):  # FSDP2 returns a DTensor
        norm = norm.full_tensor()
    return float(norm)


def resolve_compute_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def make_autocast(dtype: torch.dtype, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast where asked for; float32 runs without autocast (nothing to cast)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
