"""`puyu finetune`: full, LoRA, QLoRA, DPO/ORPO or online RL (GRPO/RLOO) fine-tuning (and continued
pretraining on raw text)."""

from __future__ import annotations

import argparse
import os

# Flags that are shorthands for config keys: (flag, dest, type, config key, help).
_SHORTHANDS: tuple[tuple[str, str, type, str, str], ...] = (
    ("--method", "method", str, "method", "full, lora, qlora, dpo, orpo, rm, grpo or rloo"),
    ("--model", "model", str, "model", "HF model folder to start from"),
    ("--data", "data", str, "data.path", "training data file (chat, preference, prompts or text JSONL/.txt)"),
    ("--data-kind", "data_kind", str, "data.kind", "chat, preference, text, prompts (default: by method)"),
    ("--out", "out", str, "run_dir", "run folder (checkpoints, metrics, artefact); default runs/finetune-METHOD"),
    ("--max-steps", "max_steps", int, "max_steps", "optimizer steps"),
    ("--seq-len", "seq_len", int, "data.seq_len", "most tokens per sequence"),
    ("--batch-size", "batch_size", int, "micro_batch_size", "sequences (or pairs) per micro-batch"),
    ("--grad-accum", "grad_accum", int, "grad_accum", "micro-batches per optimizer step"),
    ("--lr", "lr", float, "optimizer.lr", "peak learning rate"),
    ("--lora-r", "lora_r", int, "lora.r", "LoRA rank"),
    ("--lora-alpha", "lora_alpha", float, "lora.alpha", "LoRA alpha (update scale alpha / r)"),
    ("--beta", "beta", float, "dpo.beta", "DPO beta (ORPO: lambda)"),
    (
        "--reward",
        "reward",
        str,
        "rl.rewards",
        "grpo/rloo reward: numeric, exact, contains, calculator, regex:P, module:fn",
    ),
    ("--group-size", "group_size", int, "rl.group_size", "grpo/rloo: completions sampled per prompt"),
    ("--template", "template", str, "data.template", "built-in chat template instead of the model's own"),
    ("--device", "device", str, "device", "auto, cpu or cuda"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a model: full, lora, qlora, dpo, orpo, rm, grpo or rloo (and continued pretraining on text)",
        description="Settings come from CONFIG.yaml (see configs/finetune/) and/or the flags below, then KEY=VALUE "
        "overrides with dotted keys (e.g. lora.r=16 data.packing=false). A run resumes from the latest checkpoint "
        "in its run folder. The result is RUN_DIR/adapter (a PEFT folder; `puyu merge` folds it into the base) or "
        "RUN_DIR/model (an HF folder).",
    )
    parser.add_argument(
        "args", nargs="*", metavar="ARG", help="CONFIG.yaml (optional, first), then KEY=VALUE settings overrides"
    )
    choices = {
        "method": ("full", "lora", "qlora", "dpo", "orpo", "rm", "grpo", "rloo"),
        "data_kind": ("chat", "preference", "text", "prompts"),
    }
    for flag, dest, kind, _, text in _SHORTHANDS:
        parser.add_argument(flag, dest=dest, type=kind, default=None, choices=choices.get(dest), help=text)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def split_arguments(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The config file (if any) and the overrides: flags first, then KEY=VALUE arguments (which win)."""
    from puyu.errors import PuyuError

    config = None
    positional = list(args.args)
    if positional and "=" not in positional[0]:
        config = positional.pop(0)
    for item in positional:
        if "=" not in item:
            raise PuyuError(f"{item!r}: expected KEY=VALUE (only the first argument may be a config file)")
    overrides = [
        f"{key}={_yaml_value(getattr(args, dest))}"
        for _, dest, _, key, _ in _SHORTHANDS
        if getattr(args, dest) is not None
    ]
    if config is None and args.out is None and not any(o.startswith("run_dir=") for o in positional):
        overrides.append(f"run_dir=runs/finetune-{args.method or 'lora'}")
    if args.no_progress:
        overrides.append("progress=false")
    return config, overrides + positional


def _yaml_value(value: object) -> str:
    # YAML 1.1 reads "1e-05" as a string; a mantissa with a dot makes it a float.
    return format(value, ".6e") if isinstance(value, float) else str(value)


def run(args: argparse.Namespace) -> int:
    from puyu.configuration import load_config
    from puyu.finetune.config import FinetuneConfig
    from puyu.finetune.run import finetune
    from puyu.train.distributed import cleanup

    path, overrides = split_arguments(args)
    config = load_config(FinetuneConfig, path, overrides)
    try:
        result = finetune(config)
    finally:
        cleanup()
    if os.environ.get("RANK", "0") != "0":
        return 0
    train = result.train
    state = "stopped at" if train.stopped_early else "finished at"
    loss = f", train loss {train.train_loss:.4f}" if train.train_loss is not None else ""
    print(
        f"{state} step {train.step}{loss}; {result.samples} samples ({result.truncated} truncated, "
        f"{result.skipped} skipped); wrote {result.output}"
    )
    return 0
