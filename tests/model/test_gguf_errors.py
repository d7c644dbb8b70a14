"""Bad GGUF input: one-line errors that name what was found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from puyu.cli import main
from puyu.errors import PuyuError
from puyu.model.gguf import export_gguf, import_gguf
from puyu.model.init import init_model_folder

gguf = pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def good_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gguf-bad")
    folder = init_model_folder("llama-tiny", root / "src", overrides={"intermediate_size": 192})
    return export_gguf(folder, root / "good.gguf", qtype="f32").path


def _write(path: Path, arch: str, tensors: dict[str, tuple[np.ndarray, object]]) -> Path:
    writer = gguf.GGUFWriter(None, arch)
    writer.add_embedding_length(64)
    for name, (data, raw_dtype) in tensors.items():
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_truncated_file(good_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = good_file.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    err = _cli_error(capsys, "convert", str(cut), "--out", str(tmp_path / "out"))
    assert "truncated or corrupt GGUF file" in err and "cannot reshape" in err  # the last tensor is short
    cut.write_bytes(data[:100])  # inside the metadata
    err = _cli_error(capsys, "convert", str(cut), "--out", str(tmp_path / "out"))
    assert "truncated or corrupt GGUF file" in err


def test_not_a_gguf_file(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not gguf at all")
    with pytest.raises(PuyuError, match=r"not a GGUF file \(starts with b'PK"):
        import_gguf(fake, tmp_path / "out")


def test_unknown_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "mamba.gguf", "mamba", {"token_embd.weight": (np.zeros((8, 64), np.float32), None)})
    err = _cli_error(capsys, "convert", str(path), "--out", str(tmp_path / "out"))
    assert "architecture 'mamba' is not supported" in err


def test_unsupported_tensor_type(good_file: Path, tmp_path: Path) -> None:
    from puyu.model.gguf.importer import read_gguf_model
    from puyu.model.gguf.reader import GGUFFile

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.IQ4_NL]
    raw = np.zeros((8, 64 // block * size), np.uint8)
    path = _write(tmp_path / "iq.gguf", "llama", {"token_embd.weight": (raw, gguf.GGMLQuantizationType.IQ4_NL)})
    with pytest.raises(PuyuError, match=r"tensor token_embd\.weight has type IQ4_NL, which puyu does not import"):
        GGUFFile(path).check_types()
    with pytest.raises(PuyuError, match=r"missing metadata key llama\.attention\.head_count"):
        read_gguf_model(GGUFFile(path))


def test_unknown_export_type(good_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PuyuError, match="unknown GGUF type 'q3_k'"):
        export_gguf(tmp_path, qtype="q3_k")
    err = _cli_error(capsys, "convert", str(good_file), "--to", "qwen2", "--out", str(tmp_path / "o"))
    assert "--to applies to model folders" in err
