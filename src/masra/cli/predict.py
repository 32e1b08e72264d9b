"""``masra predict``: a checkpoint's submission file for a split or an annotation file, metrics when the
annotations carry labels, and optional PNG plots per query."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from masra.cli.options import add_overrides_argument
from masra.errors import MasraError

logger = logging.getLogger("masra.predict")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict moments and saliency with a trained checkpoint",
        description="Write the official submission JSONL of a checkpoint on --split or --annotations (dataset "
        "post-processing from the checkpoint's config); metrics JSON beside it when ground truth is known.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (RUN/best, RUN/last)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--split", choices=("val", "test"), help="the checkpoint config's val or test file")
    source.add_argument("--annotations", type=Path, help="any annotation JSONL of the checkpoint's dataset")
    parser.add_argument("--out", type=Path, default=Path("preds.jsonl"), help="submission JSONL (default preds.jsonl)")
    parser.add_argument("--plots", type=Path, help="folder for one PNG per query")
    parser.add_argument("--plot-limit", type=int, default=20, help="at most this many plots (default 20)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_overrides_argument(parser)
    parser.set_defaults(func=run)


def metrics_path(out: Path) -> Path:
    return out.with_name(out.stem + "_metrics.json")


def run(args: argparse.Namespace) -> int:
    from masra.data.jsonl import write_json, write_jsonl
    from masra.inference import predict_split, refuse_existing

    refuse_existing(args.out, args.force)
    refuse_existing(metrics_path(args.out), args.force)
    if args.plots is not None and args.plots.exists() and any(args.plots.iterdir()) and not args.force:
        raise MasraError("plot folder is not empty; pass --force to overwrite", file=args.plots)
    if args.plot_limit < 0:
        raise MasraError("must be >= 0", field="--plot-limit")
    result = predict_split(args.checkpoint, split=args.split, annotations=args.annotations, device=args.device,
                           config_overrides=args.overrides)
    write_jsonl(args.out, result.rows)
    logger.info("wrote %d predictions to %s", len(result.rows), args.out)
    if result.metrics is not None:
        write_json(metrics_path(args.out), result.metrics, indent=4)
        from masra.cli.evaluate import print_brief

        print_brief(result.metrics["brief"], title=f"{args.checkpoint} on {args.split or args.annotations}")
    if args.plots is not None:
        _plot(result, args.plots, args.plot_limit)
    return 0


def _plot(result, folder: Path, limit: int) -> None:
    from masra.data.paths import child_path
    from masra.visualize import plot_query, query_title

    for row, record in list(zip(result.rows, result.records))[:limit]:
        # qids are data: the file name is checked to stay inside the plot folder.
        path = child_path(folder, f"qid{row['qid']}", ".png")
        plot_query(path, {"prediction": row}, clip_length=result.cfg.data.clip_length, duration=record.duration,
                   gt_windows=record.relevant_windows, title=query_title(row))
    logger.info("wrote %d plots to %s", min(limit, len(result.rows)), folder)
