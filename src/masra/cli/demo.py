"""``masra demo``: the embedded synthetic benchmark, end to end on a CPU in minutes, no downloads."""

from __future__ import annotations

import argparse
import logging

from masra.cli.options import add_backbone_argument, add_overrides_argument
from masra.extras import require_extra


def register(subparsers: argparse._SubParsersAction) -> None:
    from masra.lab.demo.regimes import DEFAULT_REGIME, REGIMES
    from masra.lab.demo.training import DEFAULT_EPOCHS

    parser = subparsers.add_parser(
        "demo",
        help="train and evaluate on the built-in synthetic QVHighlights-style dataset",
        description="Builds a synthetic dataset from real QVHighlights annotations (shipped with the package), "
        "trains MASRA (and the baseline with --compare-baseline), evaluates with the official metrics and "
        "writes metrics.json, predictions.jsonl and plots into --out.",
    )
    parser.add_argument("--out", required=True, help="output folder (the generated dataset is cached there)")
    parser.add_argument("--data", choices=list(REGIMES), default=DEFAULT_REGIME,
                        help="data regime: planted (the demo's own, default) or hard (anchor-sized 2,816-d features, "
                        "weak drifting signal; docs/demo.md)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset and of training (default 0)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"training epochs (default {DEFAULT_EPOCHS})")
    parser.add_argument("--parts", default="all", help="MASRA parts: all (default), none, or e.g. dai,sge,lrca")
    parser.add_argument("--compare-baseline", action="store_true", help="also train the baseline (all parts off)")
    parser.add_argument("--force", action="store_true", help="replace existing result files in --out")
    parser.add_argument("--train-rows", type=int, help="use only the first N shipped training rows (default all 1,200)")
    parser.add_argument("--val-rows", type=int, help="use only the first N shipped val rows (default all 400)")
    parser.add_argument("--progress", action="store_true", help="show per-epoch progress bars")
    parser.add_argument("--workers", type=int, default=None, help="variants trained side by side (default: 1 per core, at most 2)")
    add_backbone_argument(parser)
    add_overrides_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_extra("lab", "masra demo")
    from masra.lab.demo.run import print_report, run_demo

    logging.getLogger("masra").setLevel(logging.INFO)
    report = run_demo(
        args.out,
        seed=args.seed,
        epochs=args.epochs,
        parts=args.parts,
        compare_baseline=args.compare_baseline,
        force=args.force,
        n_train=args.train_rows,
        n_val=args.val_rows,
        overrides=args.overrides,
        progress=args.progress,
        workers=args.workers,
        data=args.data,
        backbone=args.backbone,
    )
    print_report(report)
    return 0
