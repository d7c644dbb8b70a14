"""`puyu model info` shows quantization; `--chat-template FILE` / `--template FILE` take a Jinja file."""

from __future__ import annotations

from pathlib import Path

import pytest

from puyu.cli import main
from puyu.generation.generator import Generator
from puyu.generation.sampling import SamplingParams
from puyu.model.init import init_model_folder
from puyu.quant.quantize import quantize_folder


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_model_folder("internlm2-tiny", tmp_path_factory.mktemp("info") / "base", seed=3)


def test_model_info_shows_the_quantization(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["model", "info", str(base)]) == 0
    assert "quantized" not in capsys.readouterr().out
    int4 = quantize_folder(base, tmp_path / "int4", method="int4", group_size=32)
    assert main(["model", "info", str(int4)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("quantized"))
    assert "int4 weight-only, group size 32" in line
    assert "last group padded in mlp.down_proj" in line  # 176 inputs: not a multiple of 32
    assert "kept in float32: embeddings;" in line
    assert "output head int8" in line


def test_template_file_renders_the_prompt(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    template = tmp_path / "plain.jinja"
    template.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:")
    generator = Generator.from_pretrained(base, template=str(template))
    ids = generator.chat_prompt_ids([{"role": "user", "content": "hi"}])
    assert generator.tokenizer.decode(ids) == "user: hi\nassistant:"
    greedy = SamplingParams(max_tokens=6, temperature=0)
    expected = generator.chat([{"role": "user", "content": "hi"}], greedy).content
    args = ["--chat", "--prompt", "hi", "--max-tokens", "6", "--temperature", "0", "--no-stream"]
    assert main(["generate", str(base), "--template", str(template), *args]) == 0
    assert capsys.readouterr().out == expected + "\n"
