"""What ``masra bench model`` can time, by name (no torch here: the command line offers these as choices)."""

from __future__ import annotations

QD_DETR = "qd-detr"
VARIANTS = ("baseline", "masra", QD_DETR)  # masra with no part, with all five, QD-DETR's own code (table order)
JOBS = ("inference_single", "inference", "train_step")  # smallest first (peaks are read in this order)


def in_order(names: list[str] | tuple[str, ...], known: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` without repeats, in the order of ``known`` (a command line may name them in any order)."""
    return tuple(name for name in known if name in names)
