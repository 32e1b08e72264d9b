"""``masra convert qd-detr|moment-detr|cg-detr MODEL.ckpt --out RUN``: an anchor's checkpoint as a masra run folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("masra.convert")

# format -> (the anchor's converter module, the checkpoint it reads)
FORMATS = {
    "qd-detr": ("masra.convert.qd_detr", "a wjun0830/QD-DETR model_*.ckpt"),
    "moment-detr": ("masra.convert.moment_detr", "a jayleicn/moment_detr model_*.ckpt"),
    "cg-detr": ("masra.convert.cg_detr", "a wjun0830/CGDETR model_*.ckpt"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="turn another code base's checkpoint into a masra run folder",
        description="Import checkpoints of the anchor code bases (docs/video.md).")
    formats = parser.add_subparsers(dest="convert_format", metavar="FORMAT")
    for name, (_, what) in FORMATS.items():
        p = formats.add_parser(name, help=what,
                               description="Every tensor is mapped onto masra's backbone of that name; dims, clip "
                               "length and TEF come from the checkpoint's opt. Writes RUN/last and RUN/config.yaml.")
        p.add_argument("checkpoint", type=Path, help="the checkpoint (model_best.ckpt)")
        p.add_argument("--out", type=Path, required=True, help="run folder to write")
        p.add_argument("--encoder", metavar="clip:NAME_OR_PATH",
                       help="encoder of the features it was trained on (default: clip:openai/clip-vit-base-patch32 "
                       "when opt names CLIP features only; otherwise none is recorded)")
        p.add_argument("--force", action="store_true", help="replace a non-empty --out")
        p.set_defaults(func=run_convert)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_convert(args: argparse.Namespace) -> int:
    from importlib import import_module

    from masra.convert.anchor import check_output_folder, convert_checkpoint, write_run

    check_output_folder(args.out, args.force)  # before the checkpoint is read
    encoder = None
    if args.encoder is not None:
        from masra.features.encoder import EncoderSpec

        encoder = str(EncoderSpec.parse(args.encoder))
    anchor = import_module(FORMATS[args.convert_format][0]).ANCHOR
    converted = convert_checkpoint(args.checkpoint, anchor, encoder=encoder)
    folder = write_run(converted, args.out, args.checkpoint, force=args.force)
    data = converted.cfg.data
    log.info("%d tensors mapped; dropped %d unused: %s", len(converted.state_dict), len(converted.dropped),
             ", ".join(converted.dropped) or "none")
    log.info("%s: video dim %d (TEF %s), text dim %d, clip length %.1f s, max_v_l %d, encoder %s",
             folder, converted.v_feat_dim, "on" if data.use_tef else "off", converted.t_feat_dim, data.clip_length,
             data.max_v_l, converted.encoder or "not recorded")
    return 0
