"""Fine-tuning a tiny random InternVL model on the image world: image-QA accuracy before and after.

Renders a training world (seed 1) and a disjoint test world (seed 2), writes a random tiny InternVL folder
(`puyu vlm init`'s shape: 2-layer ViT on 56-pixel tiles, qwen2-tiny language model), scores short-answer image
QA on the test world, trains one LLaVA-style stage on the training world's sft.jsonl, and scores again.

    .venv/bin/python benchmarks/vlm_finetune_world.py runs/vlm-world --steps 150 --stage full
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from puyu.data.image_world import render_world
from puyu.engine.llm import LLM
from puyu.eval.image_qa import evaluate_image_qa, load_records, local_chat
from puyu.finetune.vision import VisionFinetuneConfig, finetune_vision
from puyu.model.config import ModelConfig
from puyu.model.vision.init import init_vlm_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="working folder")
    parser.add_argument("--train", type=int, default=200, help="training pictures")
    parser.add_argument("--test", type=int, default=60, help="test pictures")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--stage", choices=("projector", "lora", "full"), default="full")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--mode", choices=("short", "choice"), default="short")
    args = parser.parse_args()

    root = Path(args.out)
    train = render_world(root / "train", args.train, seed=1)
    test = render_world(root / "test", args.test, seed=2)
    base = init_vlm_folder(root / "base", ModelConfig.from_name("qwen2-tiny"), seed=0)
    records = load_records(test / "qa.jsonl")

    def accuracy(folder: Path) -> dict:
        result = evaluate_image_qa(local_chat(LLM(folder, dtype="float32")), records, args.mode, max_tokens=4)
        return {"accuracy": result.accuracy, "by_kind": result.by_kind}

    before = accuracy(base)
    started = time.perf_counter()
    config = VisionFinetuneConfig(
        model=str(base), data=str(train / "sft.jsonl"), run_dir=str(root / f"run-{args.stage}"), stage=args.stage,
        max_steps=args.steps, lr=args.lr, micro_batch_size=8, progress=False,
    )  # fmt: skip
    result = finetune_vision(config)
    seconds = time.perf_counter() - started
    after = accuracy(result.output)
    print(json.dumps({"before": before, "after": after, "final_loss": result.train.train_loss,
                      "train_seconds": seconds, "samples": result.samples}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
