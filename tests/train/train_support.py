"""A small tokenized corpus and run configs for the training tests (no external data needed)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from puyu.data.tokenize import SourceSpec, TokenizeConfig, tokenize_documents
from puyu.tokenizer import byte_level_tokenizer

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the teacher", "a bird"]
VERBS = ["sees", "likes", "finds", "draws", "follows", "calls"]
OBJECTS = ["the river", "a red ball", "the small house", "an apple", "the moon", "a green hat"]


def make_corpus(folder: Path, documents: int = 120, seed: int = 0) -> Path:
    """JSONL of short documents of simple sentences: structured enough for a tiny model to learn."""
    rng = random.Random(seed)
    rows = []
    for i in range(documents):
        sentences = [
            f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}." for _ in range(rng.randint(2, 6))
        ]
        rows.append({"id": f"doc-{i}", "text": " ".join(sentences).capitalize()})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_token_folder(root: Path, validation_fraction: float = 0.1) -> tuple[Path, Path]:
    """(token-shard folder, tokenizer folder) for the generated corpus, byte-level tokenizer."""
    tokenizer_dir = root / "tokenizer"
    byte_level_tokenizer("internlm2").save_pretrained(tokenizer_dir)
    corpus = make_corpus(root / "corpus")
    out = root / "tokens"
    tokenize_documents(
        TokenizeConfig(
            tokenizer=str(tokenizer_dir),
            output=str(out),
            validation_fraction=validation_fraction,
            sources=[SourceSpec(name="corpus", paths=[str(corpus)])],
        ),
        progress=False,
    )
    return out, tokenizer_dir


def tiny_run(run_dir: Path, tokens: Path, **overrides) -> dict:
    """Plain-data TrainConfig for a tiny model (to go through `from_dict`, as YAML does)."""
    config = {
        "run_dir": str(run_dir),
        "model": {
            "preset": "internlm2-tiny",
            "overrides": {"num_layers": 2, "hidden_size": 32, "intermediate_size": 64},
        },
        "data": {"train": [{"path": str(tokens)}], "seq_len": 32},
        "optimizer": {"lr": 3e-3},
        "schedule": {"kind": "cosine", "warmup_steps": 2},
        "max_steps": 8,
        "micro_batch_size": 4,
        "log_every": 1,
        "eval_every": 4,
        "eval_batches": 2,
        "checkpoint_every": 4,
        "progress": False,
        "peak_flops": 1e11,
    }
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return config
