"""Checkpoint weights are byte-identical across saves: safetensors' metadata order is fixed."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from puyu.train.checkpoint import save_weights

METADATA = {"format": "pt", "step": "7", "run": "x", "z": "1", "m": "2"}


def _weights() -> dict[str, torch.Tensor]:
    return {"b": torch.arange(6, dtype=torch.int64), "a": torch.ones(2, 3)}


def test_weights_files_are_byte_identical(tmp_path: Path) -> None:
    # Each save gets a freshly seeded hash map in safetensors: the plain writer's bytes vary.
    plain = set()
    for _ in range(8):
        save_file(_weights(), str(tmp_path / "plain.safetensors"), metadata=METADATA)
        plain.add((tmp_path / "plain.safetensors").read_bytes())
    assert len(plain) > 1
    files = [tmp_path / f"{n}.safetensors" for n in range(8)]
    for path in files:
        save_weights(_weights(), path, METADATA)
    assert len({path.read_bytes() for path in files}) == 1
    with safe_open(str(files[0]), framework="pt") as handle:  # still a valid file for the reference reader
        assert handle.metadata() == METADATA
        assert torch.equal(handle.get_tensor("b"), torch.arange(6))
        assert torch.equal(handle.get_tensor("a"), torch.ones(2, 3))
