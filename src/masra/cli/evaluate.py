"""``masra evaluate``: score a prediction file (official metrics JSON), or a checkpoint on a split."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from masra.cli.options import add_overrides_argument
from masra.datasets import DATASETS
from masra.errors import MasraError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score predictions with the official metrics",
        description=(
            "Score a prediction JSONL (--pred, with --gt) or a trained checkpoint (--checkpoint, with --split) "
            "and write the metrics JSON. See docs/evaluation.md."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pred", type=Path, help="prediction JSONL (one row per query, official format)")
    source.add_argument("--checkpoint", type=Path, help="checkpoint to run on --split")
    parser.add_argument("--gt", type=Path, help="ground-truth JSONL (with --pred)")
    parser.add_argument("--split", default="val", help="split to predict and score (with --checkpoint; default val)")
    parser.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument(
        "--dataset", default="qvhighlights", choices=DATASETS, help="evaluation protocol (default qvhighlights)"
    )
    parser.add_argument("--extras", action="store_true", help="add CG-DETR's MR-R1@0.3..0.95 and MR-mIoU keys")
    parser.add_argument(
        "--strict-empty", action="store_true", help="count a query with no predicted window as AP 0 (official: skipped)"
    )
    parser.add_argument(
        "--no-match-number", action="store_true", help="score only the qids shared by predictions and ground truth"
    )
    add_overrides_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.out.is_dir():
        raise MasraError("is a folder; --out names the metrics JSON file to write (e.g. DIR/metrics.json)",
                         file=args.out)
    if args.out.exists() and not args.force:
        raise MasraError("already exists (pass --force to overwrite)", file=args.out)
    if args.checkpoint is not None:
        return _run_checkpoint(args)
    if args.gt is None:
        raise MasraError("--pred needs --gt (the ground-truth JSONL)")
    from masra.data.jsonl import write_json
    from masra.eval import evaluate, load_ground_truth, load_submission

    submission = load_submission(args.pred)
    ground_truth = load_ground_truth(args.gt, args.dataset)
    metrics = evaluate(
        args.dataset,
        submission,
        ground_truth,
        match_number=not args.no_match_number,
        extras=True if args.extras else None,
        strict_empty=args.strict_empty,
    )
    write_json(args.out, metrics, indent=4)  # indented like the reference evaluator's output
    print_brief(metrics["brief"], title=f"{args.pred.name} vs {args.gt.name}")
    return 0


def _run_checkpoint(args: argparse.Namespace) -> int:
    from masra.inference import evaluate_checkpoint

    metrics = evaluate_checkpoint(
        checkpoint=args.checkpoint, split=args.split, out=args.out, config_overrides=list(args.overrides),
        force=args.force,
    )
    if isinstance(metrics, dict) and "brief" in metrics:
        print_brief(metrics["brief"], title=f"{args.checkpoint.name} on {args.split}")
    return 0


def print_brief(brief: dict[str, Any], title: str) -> None:
    """The brief metrics as a two-column rich table (plain text without rich, as in the torch-free install)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ModuleNotFoundError:
        cells = {key: "-" if value is None else f"{value:g}" for key, value in brief.items()}
        print(title)
        for key, cell in cells.items():
            print(f"  {key:<{max(map(len, cells))}}  {cell:>8}")
        return
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in brief.items():
        table.add_row(key, "-" if value is None else f"{value:g}")
    Console().print(table)
