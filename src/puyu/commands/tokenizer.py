"""`puyu tokenizer`: train a byte-level BPE tokenizer from text files."""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

from puyu.errors import PuyuError

TEXT_SUFFIXES = {".txt", ".md", ".jsonl", ".json", ".csv"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenizer", help="train tokenizers")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="train a byte-level BPE and save tokenizer.json + config")
    train.add_argument("inputs", nargs="+", help="text files, folders or globs")
    train.add_argument("--vocab-size", type=int, required=True, help="target vocabulary size incl. special tokens")
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument(
        "--chat-tokens", default="internlm2", choices=("internlm2", "qwen2", "llama3"), help="chat special tokens"
    )
    train.add_argument("--min-frequency", type=int, default=2, help="least pair count for a merge")
    train.set_defaults(handler=run_train)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files named directly, matched by a glob, or found (by text suffix) under a folder."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            matched = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matched:
                raise PuyuError(f"{item}: no such file, folder or matching glob")
            files += matched
    if not files:
        raise PuyuError("no input text files found")
    return files


def run_train(args: argparse.Namespace) -> int:
    from puyu.tokenizer import train_bpe

    files = expand_inputs(args.inputs)
    tokenizer = train_bpe(
        files, args.vocab_size, args.out, chat_tokens=args.chat_tokens, min_frequency=args.min_frequency
    )
    print(f"trained a {tokenizer.vocab_size}-token BPE on {len(files)} file(s); saved to {args.out}")
    return 0
