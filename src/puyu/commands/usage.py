"""Unknown flags are reported by the subcommand they were given to, with its usage and the closest flag."""

from __future__ import annotations

import argparse
import difflib
from typing import NoReturn


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost (sub)parser that `args` went through, e.g. `puyu model info`'s."""
    while (group := _subparsers(parser)) is not None:
        chosen = getattr(args, group.dest, None)
        if chosen not in group.choices:
            break
        parser = group.choices[chosen]
    return parser


def reject_unknown(parser: argparse.ArgumentParser, args: argparse.Namespace, extras: list[str]) -> NoReturn:
    """Exit with the subcommand's usage, naming the unknown arguments and the flags they were likely meant as."""
    target = command_parser(parser, args)
    flags = [option for action in target._actions for option in action.option_strings]
    notes = []
    for extra in extras:
        name = extra.split("=", 1)[0]
        close = difflib.get_close_matches(name, flags, n=1, cutoff=0.6) if name.startswith("-") else []
        notes.append(f"{extra} (did you mean {close[0]}?)" if close else extra)
    target.error(f"unrecognized arguments: {', '.join(notes)}")


def place_trailing_words(parser: argparse.ArgumentParser, args: argparse.Namespace, extras: list[str]) -> list[str]:
    """Put words typed after the flags into the subcommand's optional positional (`puyu agent MODEL --json
    "question"`, `puyu finetune --method lora key=value`): argparse fills such a positional (nargs ? or *) before
    the flags and leaves later words over. Returns what is still unknown."""
    if not extras or any(extra.startswith("-") for extra in extras):
        return extras
    for action in command_parser(parser, args)._actions:
        if action.option_strings or action.nargs not in ("?", "*"):
            continue
        current = getattr(args, action.dest, None)
        if action.nargs == "*":
            setattr(args, action.dest, [*(current or []), *extras])
            return []
        if current in (None, action.default) and len(extras) == 1:
            setattr(args, action.dest, extras[0])
            return []
    return extras
