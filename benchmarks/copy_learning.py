"""Can fine-tuning teach a small pretrained model to copy digits? Full fine-tuning vs LoRA, side by side.

The quickstart's calculator calls need the model to copy operands from the request into the call. This
measures how fast each way of training builds that skill on one pretrained model folder: every step is a
batch of `<s> d1..dL <sep> d1..dL` rows of random digits (the model's own digit tokens) with the loss on the
copied half only, the form SFT's assistant-only loss takes. The figure is the copy loss (cross-entropy on
the copied digits; ln 10 ≈ 2.30 means guessing, near 0 means copying) after each block of steps:

* full: AdamW over every weight;
* lora: puyu's LoRA (rank `--rank`, alpha 2·rank, every linear layer) with the base frozen, as the
  quickstart's SFT stage trains.

Both start from the same weights and see the same batches.

    .venv/bin/python benchmarks/copy_learning.py runs/quickstart/stages/pretrain-*/model
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from puyu.finetune.lora import LoraConfig, apply_lora, lora_parameters
from puyu.model.checkpoint import load_model
from puyu.tokenizer import Tokenizer


def copy_batch(digits: torch.Tensor, bos: int, sep: int, batch: int, length: int, generator: torch.Generator):
    """Rows `<s> x <sep> x` for random digit strings x; returns (ids, index of the first copied target)."""
    x = digits[torch.randint(0, len(digits), (batch, length), generator=generator)]
    ids = torch.cat([torch.full((batch, 1), bos), x, torch.full((batch, 1), sep), x], 1)
    return ids, length + 1


def train(model_dir: str, method: str, args: argparse.Namespace) -> list[float]:
    torch.manual_seed(0)
    tokenizer = Tokenizer.from_pretrained(model_dir)
    digits = torch.tensor([tokenizer.encode(str(d), add_special_tokens=False)[0] for d in range(10)])
    sep = tokenizer.encode(":", add_special_tokens=False)[0]
    model = load_model(model_dir, dtype="float32")
    if method == "lora":
        apply_lora(model, LoraConfig(r=args.rank, alpha=2.0 * args.rank))
        params = lora_parameters(model)
    else:
        params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(1)
    losses, window = [], []
    for step in range(1, args.steps + 1):
        ids, start = copy_batch(digits, tokenizer.bos_id, sep, args.batch, args.length, generator)
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits[:, start:].flatten(0, 1), ids[:, start + 1 :].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        window.append(loss.item())
        if step % args.every == 0:
            losses.append(round(sum(window) / len(window), 3))
            window = []
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a pretrained HF model folder with its tokenizer")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--every", type=int, default=25, help="report the mean copy loss of each block of steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=8, help="digits per string")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--rank", type=int, default=32)
    args = parser.parse_args()
    results = {method: train(args.model, method, args) for method in ("full", "lora")}
    print(f"copy loss per {args.every} steps (ln 10 = 2.303 is guessing)")
    for method, losses in results.items():
        print(f"{method:>5}: " + " ".join(f"{x:.3f}" for x in losses))
    print(json.dumps({"steps": args.steps, "lr": args.lr, "rank": args.rank, **results}))


if __name__ == "__main__":
    main()
