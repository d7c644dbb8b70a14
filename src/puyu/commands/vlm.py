"""`puyu vlm`: vision-language models: a random InternVL folder, the image world, LLaVA-style fine-tuning.

puyu vlm init --out DIR [--layout hf|original]
puyu vlm world --out DIR [--count N] [--seed S]
puyu vlm finetune MODEL --data sft.jsonl --run-dir RUN [--stage projector|lora|full]
(chat about an image: `puyu chat MODEL --image FILE`; serve: `puyu serve MODEL`; evaluate: `puyu eval image-qa`)
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("vlm", help="vision-language models: init, image world, LLaVA-style fine-tuning")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    init = actions.add_parser("init", help="write a random tiny InternVL folder (tests, demos)")
    init.add_argument("--out", required=True, help="output folder")
    init.add_argument("--layout", choices=("hf", "original"), default="hf", help="checkpoint layout (default hf)")
    init.add_argument("--preset", default="qwen2-tiny", help="language-model shape (default qwen2-tiny)")
    init.add_argument("--seed", type=int, default=0, help="initialisation seed")
    init.set_defaults(handler=run_init)

    world = actions.add_parser("world", help="render the image world: pictures, qa.jsonl and sft.jsonl")
    world.add_argument("--out", required=True, help="output folder")
    world.add_argument("--count", type=int, default=200, help="samples (default 200)")
    world.add_argument("--seed", type=int, default=0, help="world seed: use different seeds for train and test")
    world.set_defaults(handler=run_world)

    tune = actions.add_parser("finetune", help="LLaVA-style fine-tuning: projector, then LoRA or full")
    tune.add_argument("model", help="InternVL model folder")
    tune.add_argument("--data", required=True, metavar="JSONL", help="messages with image parts (paths relative)")
    tune.add_argument("--run-dir", required=True, help="checkpoints and output (model/, adapter/)")
    tune.add_argument("--stage", choices=("projector", "lora", "full"), default="projector")
    tune.add_argument("--max-steps", type=int, default=100)
    tune.add_argument("--micro-batch-size", type=int, default=4)
    tune.add_argument("--grad-accum", type=int, default=1)
    tune.add_argument("--lr", type=float, default=1e-3)
    tune.add_argument("--seq-len", type=int, default=1024)
    tune.add_argument("--lora-r", type=int, default=8)
    tune.add_argument("--lora-alpha", type=float, default=16.0)
    tune.add_argument("--device", default="auto")
    tune.add_argument("--seed", type=int, default=0)
    tune.set_defaults(handler=run_finetune)


def run_init(args: argparse.Namespace) -> int:
    from puyu.model.config import ModelConfig
    from puyu.model.vision.init import init_vlm_folder

    folder = init_vlm_folder(args.out, ModelConfig.from_name(args.preset), layout=args.layout, seed=args.seed)
    print(folder)
    return 0


def run_world(args: argparse.Namespace) -> int:
    from puyu.data.image_world import render_world

    folder = render_world(args.out, args.count, args.seed)
    print(f"{folder}: {args.count} pictures, qa.jsonl, sft.jsonl")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from puyu.finetune.lora import LoraConfig
    from puyu.finetune.vision import VisionFinetuneConfig, finetune_vision

    config = VisionFinetuneConfig(
        model=args.model,
        data=args.data,
        run_dir=args.run_dir,
        stage=args.stage,
        max_steps=args.max_steps,
        micro_batch_size=args.micro_batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        seq_len=args.seq_len,
        seed=args.seed,
        device=args.device,
        lora=LoraConfig(r=args.lora_r, alpha=args.lora_alpha),
    )
    result = finetune_vision(config)
    print(f"{result.samples} samples ({result.skipped} too long), final loss {result.train.train_loss:.4f}")
    print(result.output)
    if result.adapter is not None:
        print(result.adapter)
    return 0
