"""`puyu plot`: draw a training run's loss, learning-rate and throughput curves as PNGs."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="plot a training run's metrics (loss, learning rate, tokens/s) as PNGs",
        description="Reads RUN_DIR/metrics.jsonl; writes loss.png, lr.png and throughput.png.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="training run folder")
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/plots)")
    parser.set_defaults(handler=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    from puyu.train.plot import count_train_points, plot_run

    written = plot_run(args.run_dir, args.out)
    points = count_train_points(args.run_dir)
    if written and points < 2:
        print(
            f"{args.run_dir}: only {points} logged training step{'s' if points != 1 else ''}, drawn as a marker; "
            "log more often (log_every=N) or train longer for a curve"
        )
    if not written:
        print(f"{args.run_dir}: no loss, learning-rate or throughput metrics to plot")
    for path in written:
        print(path)
    return 0
