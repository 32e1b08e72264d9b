"""``masra convert qd-detr MODEL.ckpt --out RUN``: a QD-DETR checkpoint as a masra run folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("masra.convert")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="turn another code base's checkpoint into a masra run folder",
        description="Import checkpoints of the anchor code bases (docs/video.md).")
    formats = parser.add_subparsers(dest="convert_format", metavar="FORMAT")
    p = formats.add_parser("qd-detr", help="a wjun0830/QD-DETR model_*.ckpt",
                           description="Every tensor is mapped onto masra's baseline; dims, clip length and TEF "
                           "come from the checkpoint's opt. Writes RUN/last and RUN/config.yaml.")
    p.add_argument("checkpoint", type=Path, help="QD-DETR checkpoint (model_best.ckpt)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.add_argument("--encoder", metavar="clip:NAME_OR_PATH",
                   help="encoder of the features it was trained on (default: clip:openai/clip-vit-base-patch32 "
                   "when opt names CLIP features only; otherwise none is recorded)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=run_qd_detr)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_qd_detr(args: argparse.Namespace) -> int:
    from masra.convert.qd_detr import check_output_folder, convert_qd_detr, write_run

    check_output_folder(args.out, args.force)  # before the checkpoint is read
    encoder = None
    if args.encoder is not None:
        from masra.features.encoder import EncoderSpec

        encoder = str(EncoderSpec.parse(args.encoder))
    converted = convert_qd_detr(args.checkpoint, encoder=encoder)
    folder = write_run(converted, args.out, args.checkpoint, force=args.force)
    data = converted.cfg.data
    log.info("%d tensors mapped; dropped %d unused: %s", len(converted.state_dict), len(converted.dropped),
             ", ".join(converted.dropped) or "none")
    log.info("%s: video dim %d (TEF %s), text dim %d, clip length %.1f s, max_v_l %d, encoder %s",
             folder, converted.v_feat_dim, "on" if data.use_tef else "off", converted.t_feat_dim, data.clip_length,
             data.max_v_l, converted.encoder or "not recorded")
    return 0
