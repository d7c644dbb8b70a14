"""`puyu data`: prepare raw documents, tokenize them into shards, report statistics, convert chat data."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="prepare, tokenize and inspect training data")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    prepare = actions.add_parser(
        "prepare",
        help="documents → cleaned, filtered, deduplicated JSONL (+ token shards) and a report",
        description="Settings come from CONFIG.yaml (see configs/data/), then KEY=VALUE overrides "
        "(dotted keys such as filters.length.min_chars=100), then the flags.",
    )
    prepare.add_argument("config", nargs="?", default=None, help="YAML settings file (optional)")
    prepare.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="settings overrides")
    prepare.add_argument("--input", action="append", default=None, help="file, folder or glob (repeatable)")
    prepare.add_argument("--output", default=None, help="output folder")
    prepare.add_argument("--workers", type=int, default=None, help="worker processes")
    prepare.add_argument("--tokenizer", default=None, help="also pack into token shards with this tokenizer folder")
    prepare.add_argument("--no-progress", action="store_true", help="no progress bars")
    prepare.set_defaults(handler=run_prepare)

    tokenize = actions.add_parser("tokenize", help="pack documents (JSONL) into token shards with a manifest")
    tokenize.add_argument("inputs", nargs="*", help="document files (any format `prepare` reads), folders or globs")
    tokenize.add_argument("--tokenizer", required=True, help="tokenizer (or model) folder")
    tokenize.add_argument("--output", required=True, help="output folder")
    tokenize.add_argument("--text-field", default="text", help="field holding the text (default %(default)s)")
    tokenize.add_argument("--validation-fraction", type=float, default=0.0, help="share of documents held out")
    tokenize.add_argument(
        "--source", action="append", default=[], metavar="NAME=WEIGHT:GLOB", help="a named, weighted source"
    )
    tokenize.add_argument("--workers", type=int, default=1, help="worker processes")
    tokenize.add_argument("--no-progress", action="store_true", help="no progress bars")
    tokenize.set_defaults(handler=run_tokenize)

    stats = actions.add_parser("stats", help="statistics report of documents or token shards")
    stats.add_argument("inputs", nargs="+", help="document files/folders/globs, or a token-shard folder")
    stats.add_argument("--out", default=None, help="report folder (default: print only)")
    stats.add_argument("--tokenizer", default=None, help="also count tokens with this tokenizer")
    stats.add_argument("--text-field", default="text", help="field holding the text (default %(default)s)")
    stats.set_defaults(handler=run_stats)

    convert = actions.add_parser("convert-chat", help="alpaca / sharegpt / messages / xtuner / preference → JSONL")
    convert.add_argument("inputs", nargs="+", help="JSON or JSONL files")
    convert.add_argument("--output", required=True, help="output JSONL")
    convert.add_argument("--kind", choices=("chat", "preference"), default="chat", help="what the rows hold")
    convert.add_argument("--format", default=None, help="force the input format instead of detecting it per row")
    convert.add_argument("--strict", action="store_true", help="stop at the first invalid row")
    convert.set_defaults(handler=run_convert_chat)

    validate = actions.add_parser("validate", help="check a chat or preference JSONL file, line by line")
    validate.add_argument("file", help="JSONL file")
    validate.add_argument("--kind", choices=("chat", "preference"), default="chat", help="what the rows hold")
    validate.add_argument("--format", default=None, help="force the input format instead of detecting it per row")
    validate.set_defaults(handler=run_validate)


def run_prepare(args: argparse.Namespace) -> int:
    from puyu.configuration import load_config
    from puyu.data.prepare import PrepareConfig, prepare

    overrides = list(args.overrides)
    if args.config is not None and "=" in args.config:  # only overrides were given
        overrides.insert(0, args.config)
        args.config = None
    if args.input:
        overrides.append("inputs=" + _yaml_list(args.input))
    for key, value in (("output", args.output), ("workers", args.workers)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.tokenizer is not None:
        overrides.append(f"tokenize.tokenizer={args.tokenizer}")
    config = load_config(PrepareConfig, args.config, overrides)
    report = prepare(config, progress=not args.no_progress)
    written = report["written"]
    print(
        f"read {report['read']['documents']:,} documents, wrote {written['documents']:,} "
        f"({written['bytes'] / 1e6:,.1f} MB) to {config.output}/documents; report: {config.output}/report.md"
    )
    return 0


def _yaml_list(items: list[str]) -> str:
    import json

    return json.dumps(items)


def run_tokenize(args: argparse.Namespace) -> int:
    from puyu.data.tokenize import SourceSpec, TokenizeConfig, tokenize_documents

    sources = [SourceSpec(name="default", paths=list(args.inputs))] if args.inputs else []
    for spec in args.source:
        sources.append(SourceSpec.parse(spec))
    manifest = tokenize_documents(
        TokenizeConfig(
            tokenizer=args.tokenizer,
            output=args.output,
            text_field=args.text_field,
            validation_fraction=args.validation_fraction,
            workers=args.workers,
            sources=sources,
        ),
        progress=not args.no_progress,
    )
    print(f"wrote token shards; manifest: {manifest}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from puyu.data.stats import collect_stats

    summary = collect_stats(args.inputs, out=args.out, tokenizer=args.tokenizer, text_field=args.text_field)
    print(summary)
    return 0


def run_convert_chat(args: argparse.Namespace) -> int:
    from puyu.data.conversations import convert_chat_file

    report = convert_chat_file(args.inputs, args.output, kind=args.kind, format=args.format, strict=args.strict)
    _print_conversion(report)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from puyu.data.conversations import validate_chat_file

    report = validate_chat_file(args.file, kind=args.kind, format=args.format)
    _print_conversion(report)
    return 0 if not report.invalid else 1


def _print_conversion(report) -> None:
    print(report.summary())
    for error in report.errors[:20]:
        print(f"  {error}")
    if len(report.errors) > 20:
        print(f"  … {len(report.errors) - 20} more")
