"""`puyu quickstart`: world → data → tokenizer → pretrain → sft → merge → quantize → eval → report, cached."""

from __future__ import annotations

import argparse

from puyu.pipeline import STAGE_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="the whole chain on a synthetic world: data, tokenizer, pretrain, SFT, quantize, eval, report",
        description="Runs every stage that has not finished in DIR (finished stages are cached by their settings). "
        "Sizes come from the SIZE preset (puyu/pipeline/configs/SIZE.yaml); KEY=VALUE overrides change them "
        "(e.g. pretrain.max_steps=50).",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="settings overrides")
    parser.add_argument("--out", default="runs/quickstart", help="run folder (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="world and training seed (default from the config)")
    parser.add_argument("--size", default="default", choices=("tiny", "default"), help="sizes (default %(default)s)")
    parser.add_argument("--from", dest="from_stage", choices=STAGE_NAMES, help="rerun this stage and all after it")
    parser.add_argument("--until", choices=STAGE_NAMES, help="stop after this stage")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from puyu.pipeline.quickstart import load_quickstart_config, run_quickstart

    config = load_quickstart_config(args.size, args.seed, args.overrides)
    records = run_quickstart(args.out, config, from_stage=args.from_stage, until=args.until)
    out = Path(args.out)
    print()
    if "report" in records:
        print(f"Report:  {out / 'report.md'}")
    if "merge" in records:  # greedy: the settings the evaluation scored
        print(f"Next:    .venv/bin/puyu chat {out / 'model'} --temperature 0")
        print(f"         .venv/bin/puyu serve {out / 'model'}")
    return 0
