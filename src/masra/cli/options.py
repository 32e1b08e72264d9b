"""Command-line options shared by several subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from masra.errors import MasraError

RUNTIMES = ("torch", "onnx")


def add_overrides_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): the one config-override syntax of every command (into ``overrides``)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. --set train.lr=2e-4 (repeatable; values are YAML)")


def add_backbone_argument(parser: argparse.ArgumentParser) -> None:
    """``--backbone``: the grounding model the demo's settings train (``masra.lab.demo.training.demo_config``)."""
    from masra.lab.demo.training import DEFAULT_BACKBONE, demo_backbones

    parser.add_argument("--backbone", choices=demo_backbones(), default=DEFAULT_BACKBONE,
                        help="base grounding model: qd_detr (default) or another backbone, its shipped model and "
                        "losses (masra/configs/backbones/) on the demo's widths and training settings (docs/model.md)")


def add_runtime_argument(parser: argparse.ArgumentParser) -> None:
    """``--runtime torch|onnx``: the back end that grounds (see :func:`load_grounder`)."""
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch", help="torch (default: the checkpoint on "
                        "PyTorch) or onnx (--checkpoint is an export folder written by masra export, with --encoder "
                        "for video files; run on onnxruntime without torch; docs/deploy.md)")


def load_grounder(
    runtime: str, checkpoint: Path, device: str, encoder: str | None, encoder_option: str = "--encoder"
) -> Any:
    """The grounder of ``runtime``: masra.inference.Grounder on ``checkpoint`` (torch;
    ``encoder``: where to load the recorded encoder from), or masra.runtime.OnnxGrounder on the export folder
    ``checkpoint`` (onnx: the export's own encoder, on the CPU). ``encoder_option`` names the command's option for
    ``encoder`` in errors."""
    if runtime == "onnx":
        if encoder is not None:
            raise MasraError("an export holds its own encoder (masra export --encoder)", field=encoder_option)
        if device not in ("auto", "cpu"):
            raise MasraError("the onnx runtime runs on the CPU", field="--device")
        from masra.runtime import OnnxGrounder

        return OnnxGrounder.from_export(checkpoint)
    from masra.device import resolve_device
    from masra.inference import Grounder

    return Grounder.from_checkpoint(checkpoint, resolve_device(device, field="--device"), video_encoder=encoder)
