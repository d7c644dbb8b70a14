"""The `puyu` command: one subcommand per stage, each a thin call into its package.

User mistakes (`PuyuError`) print one line and exit with status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from puyu import __version__
from puyu.commands import (
    agent,
    chat,
    convert,
    data,
    eval,
    export,
    finetune,
    generate,
    kb,
    mcp,
    merge,
    model,
    plot,
    pretrain,
    quantize,
    quickstart,
    search,
    serve,
    tokenizer,
    vlm,
    web,
)
from puyu.commands.usage import place_trailing_words, reject_unknown
from puyu.errors import PuyuError

COMMANDS = (
    model,
    generate,
    chat,
    convert,
    tokenizer,
    data,
    pretrain,
    finetune,
    merge,
    export,
    quantize,
    serve,
    eval,
    quickstart,
    plot,
    agent,
    mcp,
    kb,
    web,
    search,
    vlm,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="puyu",
        description="The whole life of an open LLM: data, pretraining, fine-tuning, serving, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"puyu {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    extras = place_trailing_words(parser, args, extras)
    if extras:  # argparse would print the top-level usage; the subcommand's is the one that helps
        reject_unknown(parser, args, extras)
    try:
        return int(args.handler(args) or 0)
    except PuyuError as error:
        print(f"puyu: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # unwritable output, full disk, missing permissions: the environment, not a bug
        print(f"puyu: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
