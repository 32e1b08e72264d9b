"""``masra features extract | text``: CLIP features of video files and query texts (docs/video.md)."""

from __future__ import annotations

import argparse
import logging

from masra.errors import MasraError
from masra.extras import require_extra

log = logging.getLogger("masra.features")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "features",
        help="extract CLIP video features from video files and query features from annotations",
        description="Feature folders in the anchors' layout ({vid}.npz 'features', qid{qid}.npz "
        "'last_hidden_state' + 'pooler_output'), resumable, with the encoder recorded in extraction.json.",
    )
    commands = parser.add_subparsers(dest="features_command", metavar="STEP")
    p = commands.add_parser("extract", help="video files -> {vid}.npz clip features",
                            description="One frame per clip (the clip centre), CLIP image embeddings.")
    p.add_argument("--videos", required=True,
                   help="folder of video files (.mp4 .mkv .webm .avi), or a text file listing one path per line")
    p.add_argument("--clip-length", type=float, default=2.0, help="seconds per clip (default 2, QVHighlights; at least 0.1)")
    p.add_argument("--shard", help="i/n: only the videos of shard i of n (a stable hash of the vid)")
    _common(p, default_batch=32)
    p.set_defaults(func=run_extract)

    p = commands.add_parser("text", help="annotation queries -> qid{qid}.npz token features",
                            description="CLIP text tower: token states after the final LayerNorm (SOT..EOT) "
                            "and the projected EOT state.")
    p.add_argument("--annotations", required=True, help="annotation JSONL with qid and query fields")
    p.add_argument("--prefix", default="qid", help="file name prefix before the qid (default qid; '' for TACoS)")
    _common(p, default_batch=64)
    p.set_defaults(func=run_text)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _common(p: argparse.ArgumentParser, default_batch: int) -> None:
    p.add_argument("--out", required=True, help="output folder (resumed when it exists)")
    p.add_argument("--encoder", required=True, metavar="clip:NAME_OR_PATH",
                   help="CLIP weights: a hub name (e.g. clip:openai/clip-vit-base-patch32) or a local folder")
    p.add_argument("--batch-size", type=int, default=default_batch, help=f"items per encoder batch ({default_batch})")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--store", action="store_true", help="write a packed feature store at --out (npz in OUT.parts)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _encoder(args: argparse.Namespace):
    from masra.features.encoder import ClipEncoder
    from masra.device import resolve_device

    if args.batch_size <= 0:
        raise MasraError("must be positive", field="--batch-size")
    return ClipEncoder.load(args.encoder, resolve_device(args.device))


def _finish(summary) -> int:
    for line in summary.lines():
        log.info(line)
    return 1 if summary.failed else 0


def run_extract(args: argparse.Namespace) -> int:
    require_extra("video", "masra features extract")
    from masra.features.extract import extract_videos
    from masra.priors.generate import parse_shard
    from masra.priors.videos import index_videos
    from masra.video.limits import check_clip_length

    clip_length = check_clip_length(args.clip_length, "--clip-length")
    shard = parse_shard(args.shard) if args.shard else None
    videos = index_videos(args.videos)
    if not videos:
        raise MasraError("no video files (.mp4 .mkv .webm .avi)", file=args.videos)
    summary = extract_videos(videos, args.out, _encoder(args), clip_length=clip_length,
                             batch_size=args.batch_size, shard=shard, store=args.store,
                             progress=not args.no_progress)
    return _finish(summary)


def run_text(args: argparse.Namespace) -> int:
    require_extra("video", "masra features text")
    from masra.features.extract import extract_queries, read_queries

    rows = read_queries(args.annotations)
    summary = extract_queries(rows, args.out, _encoder(args), prefix=args.prefix, batch_size=args.batch_size,
                              store=args.store, progress=not args.no_progress)
    return _finish(summary)
