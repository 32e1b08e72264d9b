"""What ``masra bench model`` can time, by name (no torch here: the command line offers these as choices)."""

from __future__ import annotations

QD_DETR = "qd-detr"
# The bench variant of each backbone's anchor, its own code (masra.lab.bench.anchor_reference).
ANCHOR_VARIANTS = {"qd_detr": QD_DETR, "moment_detr": "moment-detr", "cg_detr": "cg-detr"}
BACKBONES = tuple(ANCHOR_VARIANTS)
# masra with no part, with all five (on the chosen backbone), the backbone's anchor (table order)
VARIANTS = ("baseline", "masra", *ANCHOR_VARIANTS.values())
JOBS = ("inference_single", "inference", "train_step")  # smallest first (peaks are read in this order)
INFERENCE_JOBS = JOBS[:2]
# What runs masra's rows: torch, or their ONNX export on onnxruntime (inference only: an export has no training step).
RUNTIMES = ("torch", "onnx")


def in_order(names: list[str] | tuple[str, ...], known: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` without repeats, in the order of ``known`` (a command line may name them in any order)."""
    return tuple(name for name in known if name in names)
