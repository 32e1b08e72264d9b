"""``masra bench scale``: time and whole-process peak memory of one training step over video lengths, for
the baseline and MASRA, with full temporal attention and with ``model.encoder_window``."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from tqdm import tqdm

from masra.lab.bench.measure import Measurement
from masra.lab.bench.model_step import StepSpec, bench_steps
from masra.lab.bench.table import BenchTable, mb, ms


@dataclass
class ScaleRow:
    clips: int
    variant: str  # "baseline" or "masra"
    encoder_window: int  # 0 = full attention
    train_step: Measurement

    def summary(self) -> str:
        window = f"window {self.encoder_window}" if self.encoder_window else "full attention"
        peak = "n/a" if self.train_step.peak_bytes is None else f"{self.train_step.peak_bytes / 2**30:.2f} GiB"
        return f"{self.clips} clips, {self.variant}, {window}: step {self.train_step.seconds:.2f} s, peak {peak}"


def bench_scale(
    lengths: list[int],
    *,
    batch_size: int = 8,
    window: int = 16,
    device: torch.device,
    threads: int | None = None,
    repeats: int = 1,
    progress: bool = True,
) -> list[ScaleRow]:
    """One row per (length, variant, window); variants at one length are timed alternately.

    With ``progress``, a bar on stderr counts clips done (its ETA assumes time linear in the length, so
    full attention on long videos takes longer) and each length's rows are printed as soon as they are
    measured, so a long run shows its results as it goes."""
    rows = []
    with tqdm(total=sum(lengths), desc="bench scale", unit="clip", disable=not progress, dynamic_ncols=True) as bar:
        for clips in lengths:
            bar.set_postfix_str(f"measuring {clips} clips")
            specs = [
                StepSpec(variant, batch_size, clips, str(device), threads, encoder_window=w)
                for variant in ("baseline", "masra")
                for w in (0, window)
            ]
            _, measured = bench_steps(specs, ("train_step",), repeats)
            done = [ScaleRow(clips, s.variant, s.encoder_window, measured[s]["train_step"]) for s in specs]
            for row in done:
                bar.write(row.summary(), file=sys.stderr)
            rows.extend(done)
            bar.update(clips)
    return rows


def scale_table(rows: list[ScaleRow]) -> BenchTable:
    return BenchTable(
        ["clips", "variant", "encoder_window", "train step", "peak memory"],
        [
            [str(r.clips), r.variant, str(r.encoder_window) if r.encoder_window else "full", ms(r.train_step.seconds),
             mb(r.train_step.peak_bytes)]
            for r in rows
        ],
    )
