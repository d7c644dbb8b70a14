"""Reading a GGUF file: its metadata and its tensors, dequantized to float32.

The `gguf` package (llama.cpp's own Python reader) parses the file and dequantizes every type this
module accepts; what puyu adds is checking: a file that is not GGUF, one cut short, a tensor type
outside the supported list, each becomes a one-line `PuyuError` naming what was found.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from puyu.errors import PuyuError, one_line

GGUF_MAGIC = b"GGUF"
# Tensor types puyu imports; all of them are dequantized by the gguf package.
IMPORT_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


def gguf_module() -> Any:
    """The `gguf` package, or a PuyuError that says how to install it."""
    try:
        import gguf
    except ImportError:
        raise PuyuError("reading or writing GGUF needs the gguf package: pip install 'puyu[gguf]'") from None
    return gguf


def is_gguf_file(path: str | os.PathLike[str]) -> bool:
    """True for an existing file that starts with the GGUF magic (or ends in .gguf)."""
    file = Path(path)
    if not file.is_file():
        return False
    if file.suffix.lower() == ".gguf":
        return True
    with file.open("rb") as handle:
        return handle.read(4) == GGUF_MAGIC


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor entry: its name, type, shape in PyTorch order, and the raw reader record."""

    name: str
    type_name: str
    shape: tuple[int, ...]
    record: Any


class GGUFFile:
    """An open GGUF file.

    Attributes:
        path: The file.
        metadata: Every key/value pair (arrays as lists, strings decoded).
        tensors: The tensor entries by name, in file order.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise PuyuError(f"{self.path}: no such file")
        with self.path.open("rb") as handle:
            magic = handle.read(4)
        if magic != GGUF_MAGIC:
            raise PuyuError(f"{self.path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")
        gguf = gguf_module()
        try:
            reader = gguf.GGUFReader(self.path)
        except Exception as bad:  # the reader raises ValueError, IndexError, KeyError... on a damaged file
            raise PuyuError(f"{self.path}: truncated or corrupt GGUF file ({one_line(bad)[:200]})") from None
        size = self.path.stat().st_size
        self.metadata: dict[str, Any] = {}
        for key, field in reader.fields.items():
            if key.startswith("GGUF."):
                continue
            try:
                self.metadata[key] = field.contents()
            except Exception as bad:
                raise PuyuError(f"{self.path}: metadata key {key!r} is unreadable ({one_line(bad)[:120]})") from None
        self.tensors: dict[str, GGUFTensor] = {}
        for record in reader.tensors:
            # The reader maps past the end of a cut-short file without complaint; the sizes tell.
            if record.data_offset + record.n_bytes > size:
                raise PuyuError(
                    f"{self.path}: truncated: tensor {record.name} ends at byte {record.data_offset + record.n_bytes}, "
                    f"the file has {size}"
                )
            shape = tuple(int(d) for d in reversed(record.shape.tolist()))
            self.tensors[record.name] = GGUFTensor(record.name, record.tensor_type.name, shape, record)

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise PuyuError(f"{self.path}: no general.architecture in the metadata")
        return arch

    def arch_value(self, key: str, default: Any = None) -> Any:
        """`{architecture}.{key}` from the metadata."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def check_types(self) -> None:
        """Raise on the first tensor whose type puyu cannot dequantize."""
        for tensor in self.tensors.values():
            if tensor.type_name not in IMPORT_TYPES:
                raise PuyuError(
                    f"{self.path}: tensor {tensor.name} has type {tensor.type_name}, which puyu does not import "
                    f"(supported: {', '.join(IMPORT_TYPES)})"
                )

    def read(self, name: str) -> np.ndarray:
        """A tensor dequantized to float32, in PyTorch's dimension order."""
        tensor = self.tensors[name]
        gguf = gguf_module()
        qtype = tensor.record.tensor_type
        try:
            values = gguf.quants.dequantize(np.asarray(tensor.record.data), qtype)
        except NotImplementedError:
            raise PuyuError(f"{self.path}: tensor {name}: type {tensor.type_name} cannot be dequantized") from None
        return np.array(values, dtype=np.float32).reshape(tensor.shape)  # a writable copy, off the memory map

    def iter_tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        self.check_types()
        for name in self.tensors:
            yield name, self.read(name)
