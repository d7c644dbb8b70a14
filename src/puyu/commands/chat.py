"""`puyu chat`: multi-turn chat in the terminal, streaming, with /reset and /system."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from puyu.commands.options import add_model_arguments, add_sampling_arguments, sampling_params, warn_split_markers

HELP = "commands: /reset (forget the conversation), /system TEXT (set the system message), /exit"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chat", help="chat with a model in the terminal")
    add_model_arguments(parser)
    parser.add_argument("--system", default=None, help="initial system message")
    add_sampling_arguments(parser, max_tokens=512)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from puyu.generation.generator import Generator

    generator = Generator.from_pretrained(
        args.model, dtype=args.dtype, device=args.device, template=args.template, adapter=args.adapter
    )
    warn_split_markers(generator, args.template)
    return chat_loop(generator, sampling_params(args), system=args.system)


def chat_loop(
    generator, params, system: str | None = None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout
) -> int:
    """Read user turns from `stdin` until EOF or /exit, streaming each reply to `stdout`."""
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
