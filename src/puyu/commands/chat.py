"""`puyu chat`: multi-turn chat in the terminal, streaming, with line editing, history and a few commands."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from puyu.commands.options import add_model_arguments, add_sampling_arguments, sampling_params, warn_split_markers
from puyu.errors import PuyuError
from puyu.generation.sampling import SamplingParams
from puyu.io import atomic_write_text

HELP = """commands:
  /help           this list
  /retry          answer the last message again (a new sample unless the settings are greedy)
  /undo           forget the last exchange
  /reset          forget the whole conversation
  /system TEXT    set the system message (and start over); /system alone clears it
  /save FILE      write the conversation as JSON ({"messages": [...]}, the format puyu finetune reads)
  /exit           leave (Ctrl-D too)
input: end a line with \\ to continue it on the next; a line of \"\"\" starts and ends a block of several lines"""

HISTORY_FILE = Path("~/.cache/puyu/chat_history").expanduser()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="chat with a model in the terminal",
        description="Streaming multi-turn chat. The banner shows the sampling settings in force; "
        "--temperature 0 gives the greedy answers `puyu eval` measures. Line editing and history (readline) "
        "in a terminal; /help lists the commands.",
    )
    add_model_arguments(parser)
    parser.add_argument("--system", default=None, help="initial system message")
    parser.add_argument("--tools", default=None, help="chat through the agent runtime with these tools (calculator,…)")
    parser.add_argument(
        "--image",
        action="append",
        default=None,
        metavar="FILE",
        help="an image to ask about (vision models; repeatable): attached to the first message",
    )
    add_sampling_arguments(parser, max_tokens=512)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.tools:
        from puyu.commands.agent import chat_with_tools

        return chat_with_tools(args)

    from puyu.model.vision.config import is_vlm_folder

    if args.image or is_vlm_folder(args.model):
        return _run_with_images(args)
    from puyu.generation.generator import Generator

    generator = Generator.from_pretrained(
        args.model, dtype=args.dtype, device=args.device, template=args.template, adapter=args.adapter
    )
    warn_split_markers(generator, args.template)
    return chat_loop(generator, sampling_params(args), system=args.system, adapter=args.adapter)


def settings_line(params: SamplingParams) -> str:
    """The sampling settings in force, as the flags that set them."""
    if params.temperature == 0:
        parts = ["greedy (--temperature 0)"]
    else:
        parts = [f"--temperature {params.temperature:g}"]
        if params.top_p < 1:
            parts.append(f"--top-p {params.top_p:g}")
        if params.top_k:
            parts.append(f"--top-k {params.top_k}")
        if params.min_p:
            parts.append(f"--min-p {params.min_p:g}")
        parts.append(f"--seed {params.seed}" if params.seed is not None else "unseeded")
    if params.repetition_penalty != 1:
        parts.append(f"--repetition-penalty {params.repetition_penalty:g}")
    parts.append(f"--max-tokens {params.max_tokens}")
    return ", ".join(parts)


def _line_reader(stdin: TextIO, stdout: TextIO, interactive: bool) -> Callable[[str], str | None]:
    """A function that shows a prompt and returns one line (None at end of input)."""
    if interactive and stdin is sys.stdin:
        _enable_readline()

        def read(prompt: str) -> str | None:
            try:
                return input(prompt)
            except EOFError:
                stdout.write("\n")
                return None

        return read

    def read_plain(prompt: str) -> str | None:
        if interactive:
            stdout.write(prompt)
            stdout.flush()
        line = stdin.readline()
        return None if not line else line.rstrip("\n")

    return read_plain


def _enable_readline() -> None:
    """Line editing and a history kept across sessions, where the platform has readline."""
    try:
        import atexit
        import readline
    except ImportError:
        return
    with contextlib.suppress(OSError):
        readline.read_history_file(HISTORY_FILE)
    readline.set_history_length(1000)

    def save() -> None:
        try:
            HISTORY_FILE.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(HISTORY_FILE)
        except OSError:
            pass

    atexit.register(save)


def read_message(read: Callable[[str], str | None]) -> str | None:
    """One user message: a line, lines joined by a trailing backslash, or a block between lines of \"\"\"."""
    line = read(">>> ")
    if line is None:
        return None
    if line.strip() == '"""':
        block: list[str] = []
        while (more := read("... ")) is not None and more.strip() != '"""':
            block.append(more)
        return "\n".join(block)
    parts = [line]
    while parts[-1].endswith("\\"):
        parts[-1] = parts[-1][:-1]
        more = read("... ")
        if more is None:
            break
        parts.append(more)
    return "\n".join(parts)


def _run_with_images(args: argparse.Namespace) -> int:
    from puyu.engine.llm import LLM
    from puyu.errors import PuyuError
    from puyu.model.vision.images import load_image

    images = [load_image(path, source=f"--image {path}") for path in args.image or []]
    llm = LLM(args.model, dtype=args.dtype, device=args.device, template=args.template, max_num_seqs=1)
    if images and llm.engine.vision is None:
        raise PuyuError(f"{args.model} has no vision encoder, so it cannot read --image")
    return chat_loop(
        EngineChat(llm), sampling_params(args), system=args.system, stdin=sys.stdin, stdout=sys.stdout, images=images
    )


class EngineChat:
    """The chat loop's view of an in-process engine (what `Generator` offers for text-only models)."""

    def __init__(self, llm) -> None:
        self.llm = llm
        self.template = llm.engine.template

    def stream_chat(self, messages: list[dict], params) -> Iterator[str]:
        for output in self.llm.stream_chat(messages, params):
            yield output.text


def chat_loop(
    generator,
    params: SamplingParams,
    system: str | None = None,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    adapter: str | None = None,
    images: list | None = None,
) -> int:
    """Read user messages until EOF or /exit, streaming each reply to `stdout`.

    Args:
        generator: a `Generator` (model, tokenizer, chat template).
        params: sampling settings, shown in the banner.
        system: the initial system message.
        stdin, stdout: where messages come from and replies go (a terminal gets a banner, prompts and readline).
        adapter: the LoRA adapter folder in use, named in the banner.
        images: decoded images that go with the first message of each conversation (vision models).
    """
    interactive = stdin.isatty()
    read = _line_reader(stdin, stdout, interactive)
    history: list[dict] = []
    if interactive:
        source = f", adapter {adapter}" if adapter else ""
        stdout.write(f"puyu chat: {generator.template.name} template{source}; {settings_line(params)}\n")
        if system:
            stdout.write(f"system: {system}\n")
        stdout.write("/help for commands, /exit to leave\n")

    def reply() -> None:
        messages = ([{"role": "system", "content": system}] if system else []) + history
        pieces = []
        for piece in generator.stream_chat(messages, params):
            pieces.append(piece)
            stdout.write(piece)
            stdout.flush()
        stdout.write("\n")
        history.append({"role": "assistant", "content": "".join(pieces)})

    while True:
        text = read_message(read)
        if text is None:
            break
        command = text.strip()
        if not command:
            continue
        if command in ("/exit", "/quit"):
            break
        if command == "/help":
            stdout.write(HELP + "\n")
        elif command == "/reset":
            history.clear()
            stdout.write("[conversation cleared]\n")
        elif command == "/system" or command.startswith("/system "):
            system = command[len("/system") :].strip() or None
            history.clear()
            stdout.write(f"[system message {'set' if system else 'cleared'}; conversation cleared]\n")
        elif command == "/undo":
            if len(history) >= 2:
                del history[-2:]
                stdout.write("[last exchange forgotten]\n")
            else:
                stdout.write("[nothing to undo]\n")
        elif command == "/retry":
            if len(history) >= 2:
                history.pop()
                reply()
            else:
                stdout.write("[nothing to retry]\n")
        elif command == "/save" or command.startswith("/save "):
            stdout.write(_save(command[len("/save") :].strip(), system, history) + "\n")
        elif command.startswith("/"):
            stdout.write(f"[unknown command {command.split()[0]}; /help lists the commands]\n")
        else:
            if images and not history:
                parts = [{"type": "image", "image": image} for image in images]
                history.append({"role": "user", "content": [*parts, {"type": "text", "text": text}]})
            else:
                history.append({"role": "user", "content": text})
            reply()
    return 0


def _save(target: str, system: str | None, history: list[dict]) -> str:
    if not target:
        return "[usage: /save FILE]"
    messages = ([{"role": "system", "content": system}] if system else []) + history
    try:
        atomic_write_text(
            Path(target).expanduser(),
            json.dumps({"messages": messages}, ensure_ascii=False, default=lambda _: "<image>") + "\n",
        )
    except (OSError, PuyuError) as bad:
        return f"[not saved: {bad}]"
    return f"[saved {len(messages)} messages to {target}]"
