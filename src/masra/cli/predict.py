"""``masra predict``: a checkpoint's submission file for a split or an annotation file, metrics when the
annotations carry labels, and optional PNG plots per query; or, with ``--video``, moments of free-text
queries in a video file (features extracted with the checkpoint's encoder; docs/video.md)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from masra.cli.options import add_overrides_argument, add_runtime_argument, load_grounder
from masra.errors import MasraError
from masra.extras import require_extra

logger = logging.getLogger("masra.predict")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict moments and saliency with a trained checkpoint",
        description="Write the official submission JSONL of a checkpoint on --split or --annotations (dataset "
        "post-processing from the checkpoint's config); metrics JSON beside it when ground truth is known. "
        "With --video FILE and --query/--queries: extract, ground, print the top moments, write the JSONL "
        "and one PNG per query.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (RUN/best, RUN/last); "
                        "with --runtime onnx, an export folder (masra export; with --video, written with --encoder)")
    add_runtime_argument(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--split", choices=("val", "test"), help="the checkpoint config's val or test file")
    source.add_argument("--annotations", type=Path, help="any annotation JSONL of the checkpoint's dataset")
    source.add_argument("--video", type=Path, help="a video file (mp4, mkv, webm, avi, ...) to ground queries in")
    queries = parser.add_mutually_exclusive_group()
    queries.add_argument("--query", help="with --video: one query text")
    queries.add_argument("--queries", type=Path, help="with --video: a .txt (one query a line) or .jsonl "
                         "(query, optional qid) file")
    parser.add_argument("--encoder", metavar="clip:NAME_OR_PATH", help="with --video: where to load the "
                        "checkpoint's encoder from (default: the one it records)")
    parser.add_argument("--top-k", type=int, default=5, help="with --video: moments printed and plotted (5)")
    parser.add_argument("--out", type=Path, default=Path("preds.jsonl"), help="submission JSONL (default preds.jsonl)")
    parser.add_argument("--plots", type=Path, help="folder for one PNG per query (with --video: default "
                        "OUT_plots next to --out)")
    parser.add_argument("--plot-limit", type=int, default=20, help="at most this many plots (default 20)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_overrides_argument(parser)
    parser.set_defaults(func=run)


def metrics_path(out: Path) -> Path:
    return out.with_name(out.stem + "_metrics.json")


def run(args: argparse.Namespace) -> int:
    if args.runtime == "onnx":
        require_extra("runtime", "masra predict --runtime onnx")
    elif args.video is not None:
        require_extra("video", "masra predict --video")
    if args.video is not None:
        return run_video(args)
    if args.plots is not None:
        require_extra("plots", "masra predict --plots")
    from masra.data.jsonl import write_json, write_jsonl
    from masra.data.paths import refuse_existing

    if args.query is not None or args.queries is not None:
        raise MasraError("--query/--queries go with --video", field="--query")
    refuse_existing(args.out, args.force)
    refuse_existing(metrics_path(args.out), args.force)
    if args.plots is not None:
        check_plot_folder(args.plots, args.force)
    if args.plot_limit < 0:
        raise MasraError("must be >= 0", field="--plot-limit")
    if args.runtime == "onnx":
        grounder = load_grounder(args.runtime, args.checkpoint, args.device, args.encoder)
        result = grounder.predict_split(split=args.split, annotations=args.annotations, overrides=args.overrides)
    else:
        from masra.inference import predict_split

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


def check_plot_folder(folder: Path, force: bool) -> None:
    """A plot folder is a folder, and empty unless ``force`` (then only its ``qid*.png`` are replaced)."""
    if folder.exists() and not folder.is_dir():
        raise MasraError("exists and is not a folder", file=folder)
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise MasraError("plot folder is not empty; pass --force to overwrite", file=folder)


def _plot(result, folder: Path, limit: int) -> None:
    from masra.data.paths import child_path
    from masra.visualize import plot_query, query_title

    for row, record in list(zip(result.rows, result.records))[:limit]:
        # qids are data: the file name is checked to stay inside the plot folder.
        path = child_path(folder, f"qid{row['qid']}", ".png")
        plot_query(path, {"prediction": row}, clip_length=result.clip_length, duration=record.duration,
                   gt_windows=record.relevant_windows, title=query_title(row))
    logger.info("wrote %d plots to %s", min(limit, len(result.rows)), folder)


def read_query_file(path: Path) -> list[tuple[int | str, str]]:
    """(qid, query) pairs: a .jsonl file's ``query`` (and optional ``qid``: an int or a string, unique, usable as
    a file name) fields, else one query a line (qids 0, 1, ...). Every pair is checked before any is used."""
    from masra.data.jsonl import iter_jsonl
    from masra.data.paths import qid_clash, unsafe_name

    if not path.is_file():
        raise MasraError("queries file not found", file=path)
    pairs: list[tuple[int | str, str]] = []
    if path.suffix == ".jsonl":
        seen: dict[str, tuple[int | str, int]] = {}
        for line, obj in iter_jsonl(path):
            query = obj.get("query")
            if not isinstance(query, str) or not query.strip():
                raise MasraError("missing or empty query", file=path, line=line, field="query")
            qid = obj.get("qid", len(pairs))
            if isinstance(qid, bool) or not isinstance(qid, (int, str)):
                raise MasraError(f"qid {qid!r} is not an int or a string", file=path, line=line, field="qid")
            unsafe = unsafe_name(str(qid))
            if unsafe is not None:
                raise MasraError(f"refusing file name {str(qid)!r}: {unsafe}", file=path, line=line, field="qid")
            clash = qid_clash(qid, line, seen)
            if clash is not None:
                raise MasraError(clash, file=path, line=line, field="qid")
            pairs.append((qid, query.strip()))
    else:
        for line, raw in enumerate(path.read_bytes().splitlines(), start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                raise MasraError(f"not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1})",
                                 file=path, line=line) from None
            if text:
                pairs.append((len(pairs), text))
    if not pairs:
        raise MasraError("no queries", file=path)
    return pairs


def run_video(args: argparse.Namespace) -> int:
    """extract -> ground every query -> printed table, submission JSONL, one PNG per query."""
    from tqdm import tqdm

    from masra.data.jsonl import write_jsonl
    from masra.data.paths import child_path
    from masra.data.paths import refuse_existing
    from masra.video.report import moments_table, plot_video_prediction

    if args.query is None and args.queries is None:
        raise MasraError("--video needs --query TEXT or --queries FILE", field="--query")
    if args.overrides:
        raise MasraError("--set does not apply to --video", field="--set")
    if args.top_k <= 0:
        raise MasraError("must be positive", field="--top-k")
    queries = [(0, args.query.strip())] if args.query is not None else read_query_file(args.queries)
    if not all(query for _, query in queries):
        raise MasraError("query is empty", field="--query")
    plots = args.plots if args.plots is not None else args.out.with_name(args.out.stem + "_plots")
    refuse_existing(args.out, args.force)
    check_plot_folder(plots, args.force)
    # qids come from a file: every PNG name is checked to stay inside the plot folder before anything runs.
    pngs = [child_path(plots, f"qid{qid}", ".png") for qid, _ in queries]
    grounder = load_grounder(args.runtime, args.checkpoint, args.device, args.encoder)
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        """One bar per stage (decode, encode: clips; ground: windows), closed when the stage completes."""
        if stage not in bars:
            bars[stage] = tqdm(total=total, desc=stage, unit="window" if stage == "ground" else "clip", leave=False,
                               dynamic_ncols=True)
        bars[stage].update(done - bars[stage].n)
        if done >= total:
            bars.pop(stage).close()

    video = grounder.extract_video(args.video, progress=progress)
    predictions = []
    for qid, query in queries:  # every query grounded before anything is written
        pred = grounder.predict_video(video, query, progress=progress)
        pred.qid = qid
        predictions.append(pred)
    for pred, png in zip(predictions, pngs):
        print(moments_table(pred, args.top_k) + "\n")
        plot_video_prediction(pred, args.video, png, top_k=args.top_k)
    rows = [pred.to_row() for pred in predictions]
    write_jsonl(args.out, rows)
    logger.info("%s: %d clips of %.1f s; wrote %d predictions to %s and %d PNG to %s", args.video,
                len(video.features), video.clip_length, len(rows), args.out, len(rows), plots)
    return 0

