"""`puyu chat`: multi-turn chat in the terminal, streaming, with /reset and /system."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import TextIO

from puyu.commands.options import add_model_arguments, add_sampling_arguments, sampling_params

HELP = "commands: /reset (forget the conversation), /system TEXT (set the system message), /exit"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chat", help="chat with a model in the terminal")
    add_model_arguments(parser)
    parser.add_argument("--system", default=None, help="initial system message")
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
    from puyu.model.vision.config import is_vlm_folder

    if args.image or is_vlm_folder(args.model):
        return _run_with_images(args)
    from puyu.generation.generator import Generator

    generator = Generator.from_pretrained(args.model, dtype=args.dtype, device=args.device, template=args.template)
    return chat_loop(generator, sampling_params(args), system=args.system)


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
    params,
    system: str | None = None,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    images: list | None = None,
) -> int:
    """Read user turns from `stdin` until EOF or /exit, streaming each reply to `stdout`; `images` (decoded
    images) go with the first message of each conversation."""
    interactive = stdin.isatty()
    history: list[dict] = []
    if interactive:
        stdout.write(f"puyu chat ({generator.template.name} template). {HELP}\n")
    while True:
        if interactive:
            stdout.write(">>> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.strip() in ("/exit", "/quit"):
            break
        if text.strip() == "/reset":
            history.clear()
            stdout.write("[conversation cleared]\n")
            continue
        if text.startswith("/system"):
            system = text[len("/system") :].strip() or None
            history.clear()
            stdout.write(f"[system message {'set' if system else 'cleared'}; conversation cleared]\n")
            continue
        if text.startswith("/"):
            stdout.write(f"[unknown command; {HELP}]\n")
            continue
        if images and not history:
            parts = [{"type": "image", "image": image} for image in images]
            history.append({"role": "user", "content": [*parts, {"type": "text", "text": text}]})
        else:
            history.append({"role": "user", "content": text})
        messages = ([{"role": "system", "content": system}] if system else []) + history
        reply = []
        for piece in generator.stream_chat(messages, params):
            reply.append(piece)
            stdout.write(piece)
            stdout.flush()
        stdout.write("\n")
        history.append({"role": "assistant", "content": "".join(reply)})
    return 0
