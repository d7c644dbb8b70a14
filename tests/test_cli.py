"""The `puyu` command end to end on tiny random models: init, info, generate, chat, convert, tokenizer train."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from puyu.cli import build_parser, main
from puyu.commands.chat import chat_loop
from puyu.generation import SamplingParams
from puyu.generation.generator import Generator


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "internlm2-tiny"
    assert main(["model", "init", "--preset", "internlm2-tiny", "--out", str(out), "--set", "num_layers=1"]) == 0
    return out


def test_model_init_writes_a_complete_folder(tiny_model: Path):
    names = {p.name for p in tiny_model.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= names
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["architectures"] == ["InternLM2ForCausalLM"] and config["num_hidden_layers"] == 1
    assert config["eos_token_id"] is not None


def test_model_info_and_presets(tiny_model: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["model", "info", str(tiny_model)]) == 0
    out = capsys.readouterr().out
    assert "internlm2" in out and "dynamic ×2" in out
    assert main(["model", "presets"]) == 0
    assert "internlm2-chat-1.8b" in capsys.readouterr().out


def test_generate_prints_what_the_library_generates(tiny_model: Path, capsys: pytest.CaptureFixture[str]):
    args = ["generate", str(tiny_model), "--prompt", "Hello", "--max-tokens", "12", "--temperature", "0"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    expected = Generator.from_pretrained(tiny_model).generate("Hello", SamplingParams(max_tokens=12, temperature=0))
    assert printed == expected.text + "\n"
    assert main([*args, "--no-stream", "--chat", "--system", "Be brief."]) == 0


def test_chat_loop_handles_commands_and_history(tiny_model: Path):
    generator = Generator.from_pretrained(tiny_model)
    seen: list[list[dict]] = []
    original = generator.stream_chat

    def recording(messages, params=None, **kwargs):
        seen.append([dict(m) for m in messages])
        return original(messages, params, **kwargs)

    generator.stream_chat = recording  # type: ignore[method-assign]
    stdin = io.StringIO("hello\nagain\n/reset\n/system Be brief.\nhi\n/bogus\n/exit\nnever read\n")
    stdout = io.StringIO()
    assert chat_loop(generator, SamplingParams(max_tokens=4, temperature=0), stdin=stdin, stdout=stdout) == 0
    assert [m["role"] for m in seen[1]] == ["user", "assistant", "user"]
    assert seen[2] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert len(seen) == 3
    assert "[conversation cleared]" in stdout.getvalue() and "unknown command" in stdout.getvalue()


def test_convert_round_trip_generates_the_same_text(tiny_model: Path, tmp_path: Path):
    assert main(["convert", str(tiny_model), "--to", "llama", "--out", str(tmp_path / "llama")]) == 0
    assert main(["convert", str(tmp_path / "llama"), "--to", "internlm2", "--out", str(tmp_path / "back")]) == 0
    params = SamplingParams(max_tokens=16, temperature=0)
    texts = {
        Generator.from_pretrained(folder, template="internlm2").generate("abc", params).token_ids.__repr__()
        for folder in (tiny_model, tmp_path / "llama", tmp_path / "back")
    }
    assert len(texts) == 1


def test_tokenizer_train_on_files_and_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 50)
    (corpus / "b.md").write_text("书生浦语 是 一个 大 语言 模型\n" * 50)
    assert main(["tokenizer", "train", str(corpus), "--vocab-size", "300", "--out", str(tmp_path / "tok")]) == 0
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    assert "saved to" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["model", "init", "--preset", "nope", "--out", "x"], "unknown preset 'nope'"),
        (["model", "init", "--preset", "internlm2-tiny", "--set", "layers=2", "--out", "x"], "--set layers"),
        (["generate", "/does/not/exist", "--prompt", "x"], "/does/not/exist: not a model folder"),
        (["tokenizer", "train", "/no/such/*.txt", "--vocab-size", "300", "--out", "x"], "no such file"),
        (["model", "init", "--preset", "internlm2-tiny", "--dtype", "fp8", "--out", "x"], "unknown dtype 'fp8'"),
    ],
)
def test_user_errors_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("puyu: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_folder_without_tokenizer(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((tiny_model / name).read_bytes())
    assert main(["generate", str(bare), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert str(bare) in err and "tokenizer" in err and err.count("\n") == 1


def test_console_script_runs_without_traceback(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "puyu", "generate", str(tmp_path), "--prompt", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("puyu: error:") and "Traceback" not in result.stderr
    help_text = subprocess.run([sys.executable, "-m", "puyu", "--help"], capture_output=True, text=True, check=True)
    for command in ("model", "generate", "chat", "convert", "tokenizer"):
        assert command in help_text.stdout


def test_bad_device(tiny_model: Path, capsys: pytest.CaptureFixture[str]):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["generate", str(tiny_model), "--prompt", "x", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert main(["generate", str(tiny_model), "--prompt", "x", "--device", "tpu9"]) == 2
    assert "unknown device 'tpu9'" in capsys.readouterr().err


def test_unwritable_output_is_one_line(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["convert", str(tiny_model), "--to", "llama", "--out", str(blocker / "sub")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("puyu: error:") and "Traceback" not in err and err.count("\n") == 1


def test_words_after_the_flags_reach_the_optional_positional() -> None:
    """`puyu agent MODEL --json "question"` as documented: argparse alone leaves the question over."""
    from puyu.commands.usage import place_trailing_words

    parser = build_parser()
    args, extras = parser.parse_known_args(["agent", "models/x", "--json", "What is 2 + 2?"])
    assert place_trailing_words(parser, args, extras) == []
    assert (args.model, args.question, args.json) == ("models/x", "What is 2 + 2?", True)
    args, extras = parser.parse_known_args(["finetune", "run.yaml", "--method", "lora", "lora.r=4"])
    assert place_trailing_words(parser, args, extras) == [] and args.args == ["run.yaml", "lora.r=4"]
    # A second question, or a flag nobody knows, is still an unknown argument.
    args, extras = parser.parse_known_args(["agent", "models/x", "q1", "--json", "q2"])
    assert place_trailing_words(parser, args, extras) == ["q2"]
    args, extras = parser.parse_known_args(["agent", "models/x", "--jsn", "q"])
    assert place_trailing_words(parser, args, extras) == ["--jsn", "q"]
