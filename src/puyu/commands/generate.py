"""`puyu generate`: complete a prompt (or answer it as a chat turn) with reference generation."""

from __future__ import annotations

import argparse
import sys

from puyu.commands.options import add_model_arguments, add_sampling_arguments, sampling_params, warn_split_markers


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="generate text from a prompt")
    add_model_arguments(parser)
    parser.add_argument("--prompt", required=True, help="the prompt text")
    parser.add_argument("--chat", action="store_true", help="send the prompt as a user turn through the chat template")
    parser.add_argument("--system", default=None, help="system message (with --chat)")
    parser.add_argument("--no-stream", action="store_true", help="print the whole answer at the end")
    add_sampling_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from puyu.generation.generator import Generator

    generator = Generator.from_pretrained(
        args.model, dtype=args.dtype, device=args.device, template=args.template, adapter=args.adapter
    )
    warn_split_markers(generator, args.template)
    params = sampling_params(args)
    if args.chat:
        messages = [{"role": "system", "content": args.system}] if args.system else []
        messages.append({"role": "user", "content": args.prompt})
        pieces = generator.stream_chat(messages, params)
    else:
        pieces = generator.stream(args.prompt, params)
    if args.no_stream:
        print("".join(pieces))
        return 0
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
