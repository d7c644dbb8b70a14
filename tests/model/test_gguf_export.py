"""GGUF export: read back by the gguf package's reader and by transformers' GGUF loader, and re-imported by puyu."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gguf_strings import mixed_strings

from puyu.cli import main
from puyu.model import load_model
from puyu.model.convert import convert_checkpoint
from puyu.model.gguf import export_gguf, import_gguf
from puyu.model.init import init_model_folder
from puyu.tokenizer import Tokenizer

gguf = pytest.importorskip("gguf")

# Widths that are multiples of 32, so every 2-D weight fits the q8_0 / q4_0 blocks.
SHAPE = {"intermediate_size": 192}
FAMILIES = {"internlm2": "internlm2-tiny", "llama": "llama-tiny", "qwen2": "qwen2-tiny"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gguf-src")
    return {
        family: init_model_folder(preset, root / family, overrides=SHAPE, seed=3) for family, preset in FAMILIES.items()
    }


def _state(folder: Path | str) -> dict[str, torch.Tensor]:
    return {name: value.float() for name, value in load_model(folder, dtype="float32").state_dict().items()}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("qtype", ["f32", "f16", "bf16"])
def test_round_trip_is_exact(family: str, qtype: str, folders: dict[str, Path], tmp_path: Path) -> None:
    source = folders[family]
    result = export_gguf(source, tmp_path / "m.gguf", qtype=qtype)
    back = _state(import_gguf(result.path, tmp_path / "back"))
    rounding = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[qtype]
    original = _state(source)
    assert set(back) == set(original)
    for name, value in original.items():
        # Norms stay float32 in GGUF, as llama.cpp keeps every 1-D tensor.
        expected = value if value.ndim == 1 else value.to(rounding).float()
        assert torch.equal(back[name], expected), name


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_transformers_reads_the_export(family: str, folders: dict[str, Path], tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    path = export_gguf(folders[family], tmp_path / "m.gguf", qtype="f32").path
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name, dtype=torch.float32)
    ids = torch.randint(0, 300, (1, 24), generator=torch.Generator().manual_seed(0))
    ours = load_model(folders[family], dtype="float32")
    with torch.no_grad():
        expected = ours(ids).float()
        got = hf.eval()(ids).logits
    assert (got - expected).abs().max().item() < 1e-4


def test_internlm2_export_matches_its_llama_layout(folders: dict[str, Path], tmp_path: Path) -> None:
    # llama.cpp's internlm2 tensors are its llama tensors: wqkv split in its per-KV-head order, q/k permuted.
    llama_dir = convert_checkpoint(folders["internlm2"], tmp_path / "as-llama", "llama")
    a = gguf.GGUFReader(export_gguf(folders["internlm2"], tmp_path / "a.gguf", qtype="f32").path)
    b = gguf.GGUFReader(export_gguf(llama_dir, tmp_path / "b.gguf", qtype="f32").path)
    assert a.fields["general.architecture"].contents() == "internlm2"
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for x, y in zip(a.tensors, b.tensors, strict=True):
        assert (x.data == y.data).all(), x.name


@pytest.mark.parametrize("qtype", ["q8_0", "q4_0"])
def test_quantized_export(qtype: str, folders: dict[str, Path], tmp_path: Path) -> None:
    source = folders["llama"]
    path = export_gguf(source, tmp_path / "m.gguf", qtype=qtype).path
    reader = gguf.GGUFReader(path)
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.ffn_down.weight"] == qtype.upper() and kinds["blk.0.attn_norm.weight"] == "F32"
    back, original = _state(import_gguf(path, tmp_path / "back")), _state(source)
    limit = {"q8_0": 0.01, "q4_0": 0.15}[qtype]
    for name, value in original.items():
        error = (back[name] - value).norm() / value.norm()
        assert error < limit, (name, error.item())


def test_tokenizers_survive_the_round_trip(folders: dict[str, Path], tmp_path: Path) -> None:
    source = folders["qwen2"]
    path = export_gguf(source, tmp_path / "m.gguf", qtype="f16").path
    ours, back = Tokenizer.from_pretrained(source), Tokenizer.from_pretrained(path)
    for text in mixed_strings(200):
        assert back.encode(text) == ours.encode(text)
    assert back.chat_template == ours.chat_template and back.eos_token == ours.eos_token


def test_sentencepiece_vocabulary_round_trip(shared_data: Path, tmp_path: Path) -> None:
    from puyu.tokenizer.gguf_vocab import GGUFVocab, vocab_from_tokenizer

    folder = shared_data / "internlm2"
    vocab, _ = vocab_from_tokenizer(folder, 92544)
    assert vocab.model == "llama" and vocab.tokens[92543] == "<|im_start|>" and vocab.token_types[92543] == 3
    rebuilt = GGUFVocab.from_metadata(_metadata(vocab, tmp_path), "test").to_tokenizer("test")
    original = Tokenizer.from_pretrained(folder)
    for text in mixed_strings(300):
        assert rebuilt.encode(text) == original.encode(text), text


def _metadata(vocab, tmp_path: Path) -> dict:
    writer = gguf.GGUFWriter(None, "internlm2")
    vocab.write(writer)
    writer.write_header_to_file(path=tmp_path / "v.gguf")
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = gguf.GGUFReader(tmp_path / "v.gguf")
    return {key: field.contents() for key, field in reader.fields.items()}


def test_quantized_folder_and_ollama(folders: dict[str, Path], tmp_path: Path) -> None:
    from puyu.quant.quantize import quantize_folder

    int8 = quantize_folder(folders["internlm2"], tmp_path / "int8", method="int8")
    code = main(
        ["export", str(int8), "--format", "gguf", "--type", "q8_0", "--ollama", "--out", str(tmp_path / "o.gguf")]
    )
    assert code == 0
    modelfile = (tmp_path / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./o.gguf") and 'PARAMETER stop "<|im_end|>"' in modelfile
    from puyu.model.gguf.exporter import dense_state

    back = _state(import_gguf(tmp_path / "o.gguf", tmp_path / "back"))
    dense = dense_state(load_model(int8, dtype="float32"))
    for name, value in dense.items():
        assert (back[name] - value).norm() / value.norm() < 0.01, name
