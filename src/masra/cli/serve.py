"""``masra serve``: the web page over a checkpoint (needs the ``masra[web]`` extra)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path

from masra.errors import MasraError
from masra.extras import require_extra

logger = logging.getLogger("masra.serve")

# Host names a browser on this machine may use for a server on an IPv4 loopback address (besides the
# address itself); any other Host (DNS rebinding) is refused.
LOOPBACK_NAMES = ["127.0.0.1", "localhost"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="a web page: upload a video, type a query, see and play the moments",
        description="Serve a page where a person uploads a video (or picks one from --videos), types a query, "
        "and gets the top moments on a timeline under the saliency curve. Needs: pip install 'masra[web]'.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (RUN/best, RUN/last)")
    parser.add_argument("--videos", type=Path, help="folder of videos the page offers by name")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--video-encoder", help="where the image tower's weights are, e.g. clip:/models/clip-b32 "
                        "(default: the encoder recorded in the checkpoint)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--max-duration", type=float, default=600.0, help="longest video accepted, seconds (600)")
    parser.add_argument("--max-upload-mb", type=float, default=500.0, help="largest upload accepted, MB (500)")
    parser.add_argument("--max-query-chars", type=int, default=300, help="longest query accepted (300)")
    parser.add_argument("--max-uploads", type=int, default=20, help="uploads kept on disk; oldest deleted (20)")
    parser.add_argument("--top-k", type=int, default=10, help="moments shown per query (10)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_extra("web", "masra serve")
    import uvicorn

    from masra.web.app import create_app
    from masra.inference import Grounder
    from masra.device import resolve_device
    from masra.web.limits import ServeLimits
    from masra.web.media import VideoLibrary
    from masra.web.service import GroundingService

    limits = ServeLimits(max_duration=args.max_duration, max_upload_bytes=int(args.max_upload_mb * 2**20),
                         max_query_chars=args.max_query_chars, max_uploads=args.max_uploads, top_k=args.top_k)
    if not 1 <= args.port <= 65535:
        raise MasraError(f"{args.port} is not a port number", field="--port")
    if args.videos is not None and not args.videos.is_dir():
        raise MasraError("not a folder", file=args.videos, field="--videos")
    grounder = Grounder.from_checkpoint(args.checkpoint, device=resolve_device(args.device, field="--device"),
                                        video_encoder=args.video_encoder)
    logger.info("loading the encoder %s", grounder.encoder_spec)
    _ = grounder.encoder  # load and check it now: a missing or wrong encoder stops here, not on the first query
    loopback = _is_loopback(args.host)
    if not loopback:
        logger.warning("binding %s: anyone who can reach this address can upload videos and run queries", args.host)
    app = create_app(GroundingService(grounder, limits.top_k), VideoLibrary(args.videos, limits.max_duration),
                     limits, title=_checkpoint_title(args.checkpoint),
                     allowed_hosts=sorted({args.host, *LOOPBACK_NAMES}) if loopback and ":" not in args.host else None)
    logger.info("uploads go to %s (deleted on exit)", app.state.uploads.folder)
    print(f"masra serve: open http://{_url_host(args.host)}:{args.port}/  (Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _checkpoint_title(checkpoint: Path) -> str:
    """What the page calls the model: the checkpoint's run and folder names (no full server path)."""
    return "/".join(checkpoint.resolve().parts[-2:])


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
