"""`puyu finetune`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser("finetune", help="(not built yet)")
