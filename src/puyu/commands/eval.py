"""`puyu eval`: benchmark models (folders or OpenAI-compatible endpoints) on local benchmark files.

puyu eval --model DIR [--model DIR2] [--api URL] --tasks mmlu,gsm8k --data-dir DATA --out OUT
puyu eval --config run.yaml
puyu eval needle … / puyu eval judge …   (long-context retrieval, LLM-as-a-judge)
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate models on benchmarks (MMLU, CMMLU, C-Eval, GSM8K, ARC, HellaSwag, YAML tasks)",
        description="Runs each task on each model (log-likelihood over options, generation with answer "
        "extraction, or perplexity), caches every sample in OUT so an interrupted run resumes, and writes "
        "OUT/summary.{md,csv,json}, OUT/scores.png and OUT/<model>/<task>/predictions.jsonl.",
    )
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="DIR",
        help="HF model folder (repeat for several models side by side)",
    )
    parser.add_argument(
        "--api",
        dest="apis",
        action="append",
        default=[],
        metavar="URL",
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (repeatable)",
    )
    parser.add_argument(
        "--name",
        dest="names",
        action="append",
        default=[],
        metavar="NAME",
        help="a display name for each --model then --api, in order (default: the folder's or model's name)",
    )
    parser.add_argument("--api-key", default=None, help="API key for --api (default $OPENAI_API_KEY)")
    parser.add_argument("--api-model", default=None, help="model name to request from --api (default: its first)")
    parser.add_argument(
        "--tasks",
        default="",
        help="comma-separated: mmlu, mmlu_<subject>, cmmlu, ceval, gsm8k, "
        "arc_challenge, arc_easy, hellaswag, or YAML task files",
    )
    parser.add_argument(
        "--task-file",
        dest="task_files",
        action="append",
        default=[],
        metavar="YAML",
        help="a YAML task over your own JSONL/CSV (repeatable)",
    )
    parser.add_argument("--data-dir", default=None, help="folder with mmlu/, cmmlu/, ceval/, gsm8k/, arc/, hellaswag/")
    parser.add_argument("--shots", type=int, default=None, help="few-shot examples (default: each task's own)")
    parser.add_argument("--limit", type=int, default=None, help="at most N samples per task (per subject)")
    parser.add_argument("--out", default=None, help="output folder (default eval-out)")
    parser.add_argument("--batch-size", type=int, default=16, help="questions per forward pass (local models)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes per local model, or concurrent requests per endpoint (default 8)",
    )
    parser.add_argument(
        "--chat",
        choices=["auto", "on", "off"],
        default="auto",
        help="chat-template prompts (auto: per task, else when the model folder ships a chat template; "
        "endpoints: by the model's name)",
    )
    parser.add_argument("--config", default=None, metavar="YAML", help="a run file: models × tasks and options")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run_eval)
    extra = parser.add_subparsers(dest="eval_command", metavar="{needle,judge,tools,kb,image-qa}")
    extra.required = False
    from puyu.commands import eval_agent, eval_images

    eval_agent.register(extra)
    eval_images.register(extra)
    try:
        from puyu.commands import eval_extras
    except ImportError:
        return
    eval_extras.register(extra)


def run_eval(args: argparse.Namespace) -> int:
    from puyu.errors import PuyuError
    from puyu.eval.api import load_run_config, run_evaluation

    if args.config:
        options = load_run_config(args.config)
        if args.out:
            options["out_dir"] = args.out
    else:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        paths = [*args.models, *args.apis]
        if len(args.names) > len(paths):
            raise PuyuError(f"{len(args.names)} --name given for {len(paths)} models (one per --model/--api, in order)")
        names = [*args.names, *[None] * (len(paths) - len(args.names))]
        options = {
            "models": [{"path": path, "name": name} if name else path for path, name in zip(paths, names, strict=True)],
            "tasks": tasks,
            "task_files": args.task_files,
            "data_dir": args.data_dir,
            "out_dir": args.out or "eval-out",
            "shots": args.shots,
            "limit": args.limit,
            "chat": {"auto": None, "on": True, "off": False}[args.chat],
            "batch_size": args.batch_size,
            "workers": args.workers,
            "api_key": args.api_key,
            "api_model": args.api_model,
        }
    if (args.limit is not None and args.limit < 1) or (args.shots is not None and args.shots < 0):
        raise PuyuError("--limit must be >= 1 and --shots >= 0")
    report = run_evaluation(**options, progress=not args.quiet)
    if not report.results:
        raise PuyuError("no task was scored: " + "; ".join(f"{k}: {v}" for k, v in report.failures.items()))
    summary = report.out_dir / "summary.md" if report.out_dir else None
    if summary and summary.is_file():
        print(summary.read_text(encoding="utf-8"), end="")
    for path in report.files:
        print(path)
    return 0
