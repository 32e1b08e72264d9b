"""``masra bench scale``: time and whole-process peak memory of one training step over video lengths, for
the baseline and MASRA, with full temporal attention and with ``model.encoder_window``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from masra.bench.measure import Measurement
from masra.bench.model_step import StepSpec, bench_steps


@dataclass
class ScaleRow:
    clips: int
    variant: str  # "baseline" or "masra"
    encoder_window: int  # 0 = full attention
    train_step: Measurement


def bench_scale(
    lengths: list[int],
    *,
    batch_size: int = 8,
    window: int = 16,
    device: torch.device,
    threads: int | None = None,
    repeats: int = 1,
) -> list[ScaleRow]:
    """One row per (length, variant, window); variants at one length are timed alternately."""
    rows = []
    for clips in lengths:
        specs = [
            StepSpec(variant, batch_size, clips, str(device), threads, encoder_window=w)
            for variant in ("baseline", "masra")
            for w in (0, window)
        ]
        _, measured = bench_steps(specs, ("train_step",), repeats)
        rows.extend(ScaleRow(clips, s.variant, s.encoder_window, measured[s]["train_step"]) for s in specs)
    return rows
