"""`puyu pretrain`: train a decoder on token shards from a YAML config (torchrun for several processes)."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain or continue pretraining on token shards",
        description="Settings come from CONFIG.yaml (see configs/pretrain/), then KEY=VALUE overrides with dotted keys "
        "(e.g. max_steps=200 optimizer.lr=1e-3). A run resumes from the latest checkpoint in its run_dir. "
        "Several processes: torchrun --nproc-per-node N -m puyu pretrain CONFIG.yaml",
    )
    parser.add_argument("config", help="YAML settings file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="settings overrides")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from puyu.configuration import load_config
    from puyu.train.config import TrainConfig
    from puyu.train.distributed import cleanup
    from puyu.train.loop import pretrain

    config = load_config(TrainConfig, args.config, args.overrides)
    try:
        result = pretrain(config)
    finally:
        cleanup()
    if os.environ.get("RANK", "0") != "0":
        return 0
    state = "stopped at" if result.stopped_early else "finished at"
    loss = f", train loss {result.train_loss:.4f}" if result.train_loss is not None else ""
    val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    print(f"{state} step {result.step}{loss}{val}; checkpoints in {result.run_dir}/checkpoints")
    return 0
