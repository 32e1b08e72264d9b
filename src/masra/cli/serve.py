"""``masra serve``: the web page over a checkpoint (needs the ``masra[web]`` extra)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from masra.cli.options import add_runtime_argument, load_grounder
from masra.errors import MasraError
from masra.extras import require_extra

logger = logging.getLogger("masra.serve")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="a web page: upload a video, type a query, see and play the moments",
        description="Serve a page where a person uploads a video (or picks one from --videos), types a query, "
        "and gets the top moments on a timeline under the saliency curve. Needs: pip install 'masra[web]'.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (RUN/best, RUN/last); "
                        "with --runtime onnx, an export folder (masra export --encoder)")
    add_runtime_argument(parser)
    parser.add_argument("--videos", type=Path, help="folder of videos the page offers by name")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a further host name or address (no port) clients reach the server by: a DNS name, a LAN "
                        "address, a proxy's name; requests naming any other Host are refused. Repeatable; '*' "
                        "accepts any Host")
    parser.add_argument("--video-encoder", help="where the image tower's weights are, e.g. clip:/models/clip-b32 "
                        "(default: the encoder recorded in the checkpoint)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--max-duration", type=float, default=600.0, help="longest video accepted, seconds (600)")
    parser.add_argument("--max-upload-mb", type=float, default=500.0, help="largest upload accepted, MB (500)")
    parser.add_argument("--max-query-chars", type=int, default=300, help="longest query accepted (300)")
    parser.add_argument("--max-uploads", type=int, default=20, help="uploads kept on disk; the oldest that no "
                        "queued or running query needs is deleted first (20)")
    parser.add_argument("--max-concurrent-uploads", type=int, default=4,
                        help="uploads received at once; more are refused with 429 (4)")
    parser.add_argument("--max-queued-jobs", type=int, default=20,
                        help="queries waiting behind the running one; more are refused with 429 (20)")
    parser.add_argument("--top-k", type=int, default=10, help="moments shown per query (10)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.runtime == "onnx":  # the page and the torch-free runtime, without the video extra's transformers
        require_extra("web", "masra serve", modules=("fastapi", "starlette", "uvicorn"))
        require_extra("runtime", "masra serve --runtime onnx")
    else:
        require_extra("web", "masra serve")
    import uvicorn

    from masra.web.app import create_app
    from masra.web.hosts import host_names, is_loopback
    from masra.web.limits import ServeLimits
    from masra.web.media import VideoLibrary
    from masra.web.service import GroundingService

    limits = ServeLimits(max_duration=args.max_duration, max_upload_bytes=int(args.max_upload_mb * 2**20),
                         max_query_chars=args.max_query_chars, max_uploads=args.max_uploads,
                         max_concurrent_uploads=args.max_concurrent_uploads, max_queued_jobs=args.max_queued_jobs,
                         top_k=args.top_k)
    if not 1 <= args.port <= 65535:
        raise MasraError(f"{args.port} is not a port number", field="--port")
    if args.videos is not None and not args.videos.is_dir():
        raise MasraError("not a folder", file=args.videos, field="--videos")
    grounder = load_grounder(args.runtime, args.checkpoint, args.device, args.video_encoder, "--video-encoder")
    # Loaded and checked now: a missing or wrong encoder stops here, not on the first query.
    logger.info("encoder %s loaded", grounder.encoder.spec)
    hosts = host_names(args.host, args.allowed_host)
    if not is_loopback(args.host):
        logger.warning("binding %s: anyone who can reach this address can upload videos and run queries; the server "
                       "answers to the host names %s", args.host, ", ".join(hosts) if hosts else "(any)")
    app = create_app(GroundingService(grounder, limits.top_k), VideoLibrary(args.videos, limits.max_duration),
                     limits, title=_checkpoint_title(args.checkpoint), allowed_hosts=hosts)
    logger.info("uploads go to %s (deleted on exit)", app.state.uploads.folder)
    print(f"masra serve: open http://{_url_host(args.host)}:{args.port}/  (Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _checkpoint_title(checkpoint: Path) -> str:
    """What the page calls the model: the checkpoint's run and folder names (no full server path)."""
    return "/".join(checkpoint.resolve().parts[-2:])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
