"""``masra export --checkpoint RUN --out DIR``: the grounding model as ONNX plus ``export.json`` (docs/deploy.md)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("masra.export")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a checkpoint's model as ONNX for the torch-free runtime",
        description="Writes DIR/model.onnx (batch, clip count and query length dynamic) and DIR/export.json "
        "(input dims and settings, post-processing, the feature encoder), then checks the export on "
        "onnxruntime against the torch model (docs/deploy.md).")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="checkpoint folder (RUN/best) or run folder (its last checkpoint)")
    parser.add_argument("--out", type=Path, required=True, help="export folder to write (new, empty, or an export)")
    parser.add_argument("--encoder", metavar="clip:NAME_OR_PATH", help="also export the CLIP image and text "
                        "encoders and the tokenizer, loaded from here (checked to be the encoder the checkpoint "
                        "records), so that the runtime grounds video files")
    parser.add_argument("--force", action="store_true", help="replace a previous export in --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from masra.extras import require_extra

    require_extra("export", "masra export")
    if args.encoder is not None:
        require_extra("video", "masra export --encoder", modules=("transformers",))
    from masra.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out, encoder=args.encoder, force=args.force)
    log.info("exported to %s", out)
    return 0
