"""``masra priors generate | merge | encode | check``: MLLM priors for training (docs/priors.md)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from masra.errors import MasraError
from masra.extras import require_extra

log = logging.getLogger("masra.priors")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "priors",
        help="generate MLLM priors (captions, events) for training and encode them",
        description="Prior generation for MASRA training: generate (MLLM) -> encode (text encoder) -> check.",
    )
    commands = parser.add_subparsers(dest="priors_command", metavar="STEP")
    _register_generate(commands)
    _register_merge(commands)
    _register_encode(commands)
    _register_check(commands)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _register_generate(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "generate",
        help="caption every clip and describe the events of every video with an MLLM",
        description="Frames -> MLLM -> priors.jsonl (one record per video; resumable; see docs/priors.md).",
    )
    p.add_argument("--videos", required=True, help="folder of {vid}.{mp4,mkv,webm,avi} files, or a text file listing videos")
    p.add_argument("--annotations", required=True, help="annotation JSONL (vids and durations)")
    p.add_argument("--out", required=True, help="prior cache (JSONL); an existing one is resumed")
    p.add_argument("--backend", choices=("openai", "transformers"), default="openai")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="OpenAI-compatible endpoint (…/v1)")
    p.add_argument("--model", help="model name to request (openai) or load (transformers)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--text-only", action="store_true", help="the model takes no images: send the prompts without them")
    p.add_argument("--device", help="transformers backend: torch device (default: cuda when available)")
    # The options below default to GenerateOptions (docs/priors.md lists the values); only given ones are passed.
    p.add_argument("--temperature", type=float, help="sampling temperature")
    p.add_argument("--max-tokens", type=int, help="most tokens per reply")
    p.add_argument("--concurrency", type=int, help="requests in flight (and videos worked on) at once")
    p.add_argument("--timeout", type=float, help="seconds per request (default: none for transformers)")
    p.add_argument("--max-retries", type=int,
                   help="retries per request (429, 5xx, timeouts, bad bodies); also the most re-asks of a "
                        "caption reply with the wrong number of captions")
    p.add_argument("--clip-length", type=float, help="seconds per clip (default: from the dataset, 2 for QVHighlights)")
    p.add_argument("--caption-batch", type=int, help="clip frames per caption request")
    p.add_argument("--event-frames", type=int, help="most frames for the event request (<= 64)")
    p.add_argument("--event-interval", type=float, help="seconds between event frames")
    p.add_argument("--short-side", type=int, help="caption frames: shorter side in pixels")
    p.add_argument("--event-short-side", type=int, help="event frames: shorter side in pixels")
    p.add_argument("--decode-threads", type=int, help="videos decoded at the same time (CPU threads)")
    p.add_argument("--shard", help="i/n: only the videos of shard i of n (a stable hash of the vid)")
    p.add_argument("--limit", type=int, help="process at most N videos (after skipping finished ones)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_generate)


def _register_merge(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("merge", help="merge prior caches (e.g. one per shard) into one")
    p.add_argument("inputs", nargs="+", help="prior caches (JSONL)")
    p.add_argument("--out", required=True, help="merged cache, one record per vid (written atomically)")
    p.add_argument("--force", action="store_true", help="replace an existing --out (only if it is a prior cache)")
    p.set_defaults(func=run_merge)


def _register_encode(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("encode", help="encode a prior cache into per-video {vid}.npz files")
    p.add_argument("--priors", required=True, help="prior cache (JSONL) from `masra priors generate`")
    p.add_argument("--out", required=True, help="folder for {vid}.npz")
    p.add_argument("--encoder", default="minilm", help="minilm | sentence-transformers:PATH | clip:PATH")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", help="torch device (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_encode)


def _register_check(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("check", help="report prior coverage and consistency against annotations")
    p.add_argument("--priors", required=True, help="prior cache (JSONL) or folder of {vid}.npz")
    p.add_argument("--annotations", help="annotation JSONL to check coverage against")
    p.add_argument("--json", dest="json_out", help="also write the report as JSON to this file")
    p.set_defaults(func=run_check)


# `masra priors generate` argument -> GenerateOptions field.
GENERATE_OPTIONS = {
    "caption_batch": "caption_batch",
    "event_interval": "event_interval",
    "event_frames": "event_frames",
    "short_side": "caption_short_side",
    "event_short_side": "event_short_side",
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "concurrency": "concurrency",
    "timeout": "request_timeout",
    "max_retries": "max_retries",
    "decode_threads": "decode_threads",
}


def generate_options(args: argparse.Namespace, clip_length: float) -> Any:
    """GenerateOptions from the arguments given; the others keep GenerateOptions' defaults (the local
    transformers backend runs without a request timeout unless --timeout is given)."""
    from masra.priors.generate import GenerateOptions

    given = {field: getattr(args, arg) for arg, field in GENERATE_OPTIONS.items() if getattr(args, arg) is not None}
    if args.backend == "transformers":
        given.setdefault("request_timeout", None)
    return GenerateOptions(clip_length=clip_length, show_progress=not args.no_progress, **given)


def _build_backend(args: argparse.Namespace, timeout: float | None) -> Any:
    if args.backend == "openai":
        from masra.priors.backends.openai_compat import OpenAICompatBackend

        if not args.model:
            raise MasraError("--model is required with --backend openai (the name the server serves)", field="model")
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            log.info("no API key in $%s: sending requests without one (fine for local servers)", args.api_key_env)
        return OpenAICompatBackend(
            args.base_url, args.model, api_key=api_key, timeout=timeout, supports_images=not args.text_only
        )
    from masra.priors.backends.transformers_local import TransformersBackend

    if not args.model:
        raise MasraError("--model is required with --backend transformers (a model id or local path)", field="model")
    return TransformersBackend(args.model, device=args.device)


def run_generate(args: argparse.Namespace) -> int:
    require_extra("priors", "masra priors generate")
    if args.backend == "transformers":
        require_extra("local-llm", "masra priors generate --backend transformers")
    from masra.priors.generate import generate_priors, parse_shard
    from masra.config import DATASET_CLIP_LENGTH
    from masra.priors.videos import index_videos, match_videos, read_annotated_videos

    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request would bury the bar
    annotated = read_annotated_videos(args.annotations)
    clip_length = args.clip_length or DATASET_CLIP_LENGTH[annotated.dataset]
    jobs, missing = match_videos(annotated.durations, index_videos(args.videos))
    if missing:
        log.warning("%d of %d videos have no file in %s (e.g. %s)", len(missing), len(annotated.durations),
                    args.videos, ", ".join(missing[:3]))
    if not jobs:
        raise MasraError("no annotated video has a video file", file=args.videos)
    options = generate_options(args, clip_length)
    shard = parse_shard(args.shard) if args.shard else None
    backend = _build_backend(args, options.request_timeout)
    summary = generate_priors(jobs, backend, args.out, options, shard=shard, limit=args.limit)
    for line in summary.lines():
        print(line)
    if summary.stopped:
        raise MasraError(
            f"the backend refused the request: {summary.stopped}. "
            f"{summary.videos} finished videos are saved; fix the problem and rerun the same command to resume",
            file=args.out,
        )
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from masra.priors.cache import merge_caches

    counts = merge_caches(args.inputs, args.out, force=args.force)
    print(f"{sum(counts.values())} videos -> {args.out} ({counts['ok']} ok, {counts['partial']} partial, "
          f"{counts['failed']} failed)")
    return 0


def run_encode(args: argparse.Namespace) -> int:
    require_extra("priors", "masra priors encode")
    from masra.priors.encode import encode_priors

    summary = encode_priors(
        priors=args.priors,
        out=args.out,
        encoder=args.encoder,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
    )
    print(f"{summary.encoded} encoded, {summary.unchanged} unchanged, {summary.empty} empty of {summary.videos} "
          f"videos -> {summary.out_dir} ({summary.encoder}, {summary.seconds:.1f} s)")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from masra.priors.check import check_priors

    report = check_priors(priors=args.priors, annotations=args.annotations, json_out=args.json_out)
    report.render()
    return 0
