"""A real-data LoRA run: pretrain a small model on tinyshakespeare with puyu, then LoRA-SFT it on Alpaca.

    python benchmarks/finetune_alpaca.py --data ../shared/data --out runs/bench/alpaca

Every step is the `puyu` command a user would type: tokenizer training, the data pipeline, pretraining,
export, LoRA fine-tuning with the InternLM2 chat template, merge, and a chat reply from the merged model.
Prints the first and last training losses and where the loss curves are.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def puyu(*args: str) -> None:
    command = [sys.executable, "-m", "puyu", *args]
    print("$ puyu " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def write_documents(text_file: Path, out: Path, chars: int = 4000) -> Path:
    """The play as JSONL documents of about `chars` characters, cut at blank lines (one 1 MB document is too long
    for the data pipeline's length filter)."""
    documents, current = [], ""
    for part in text_file.read_text(encoding="utf-8").split("\n\n"):
        current = f"{current}\n\n{part}" if current else part
        if len(current) >= chars:
            documents.append(current)
            current = ""
    if current:
        documents.append(current)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps({"text": doc}) + "\n" for doc in documents), encoding="utf-8")
    return out


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [row["loss"] for row in rows if row.get("split", "train") == "train" and "loss" in row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/alpaca"))
    parser.add_argument("--pretrain-steps", type=int, default=400)
    parser.add_argument("--lora-steps", type=int, default=300)
    args = parser.parse_args()
    shakespeare = args.data / "tinyshakespeare" / "input.txt"
    alpaca = args.data / "alpaca" / "alpaca_5000.json"
    for path in (shakespeare, alpaca):
        if not path.is_file():
            sys.exit(f"missing {path} (pass --data pointing at the shared data folder)")
    out = args.out
    started = time.perf_counter()
    puyu("tokenizer", "train", str(shakespeare), "--vocab-size", "4096", "--out", str(out / "tokenizer"))
    documents = write_documents(shakespeare, out / "shakespeare.jsonl")
    puyu(
        "data", "prepare", "--input", str(documents), "--output", str(out / "data"),
        "--tokenizer", str(out / "tokenizer"), "--workers", "1",
    )  # fmt: skip
    puyu(
        "pretrain", "configs/pretrain/internlm2-tiny.yaml", f"run_dir={out / 'pretrain'}",
        f"data.train=[{{path: {out / 'data' / 'tokens'}}}]", "model.overrides.vocab_size=4096",
        "model.overrides.hidden_size=256", "model.overrides.intermediate_size=688",
        f"max_steps={args.pretrain_steps}", "checkpoint_every=100",
    )  # fmt: skip
    puyu("export", str(out / "pretrain"), "--out", str(out / "base"))
    puyu(
        "finetune", "--method", "lora", "--model", str(out / "base"), "--data", str(alpaca),
        "--out", str(out / "lora"), "--max-steps", str(args.lora_steps), "--seq-len", "256",
        "--batch-size", "8", "--lr", "2e-3", "--lora-r", "16", "--lora-alpha", "32",
    )  # fmt: skip
    puyu("merge", str(out / "base"), str(out / "lora" / "adapter"), "--out", str(out / "merged"))
    puyu(
        "generate", str(out / "merged"), "--chat", "--prompt", "Give three tips for staying healthy.",
        "--max-tokens", "64", "--temperature", "0",
    )  # fmt: skip
    pretrain_loss, lora_loss = losses(out / "pretrain"), losses(out / "lora")
    print(f"\npretrain loss {pretrain_loss[0]:.3f} → {pretrain_loss[-1]:.3f} ({args.pretrain_steps} steps)")
    print(f"LoRA SFT loss {lora_loss[0]:.3f} → {lora_loss[-1]:.3f} ({args.lora_steps} steps)")
    print(f"loss curves: {out / 'pretrain' / 'plots' / 'loss.png'}, {out / 'lora' / 'plots' / 'loss.png'}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
