"""``masra bench sora``: SORA's banded attention against its dense O(L²) path, over video lengths."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from masra.lab.bench.measure import Measurement, measure
from masra.lab.bench.table import BenchTable, mb, ms, ratio
from masra.model.parts.sora import SORALayer


@dataclass
class SoraRow:
    clips: int
    banded: Measurement
    dense: Measurement
    max_abs_diff: float  # banded vs dense outputs: they compute the same function


def bench_sora(
    lengths: list[int],
    *,
    band: int = 16,
    hidden_dim: int = 256,
    nheads: int = 8,
    batch: int = 1,
    device: torch.device,
    repeats: int = 3,
) -> list[SoraRow]:
    """Forward time and peak memory of one SORA attention at each length, banded vs dense (same weights)."""
    torch.manual_seed(0)
    layer = SORALayer(hidden_dim, nheads, 4 * hidden_dim, dropout=0.0, band=band).to(device).eval()
    rows = []
    for length in lengths:
        total = length + 1  # global token + clips
        src = torch.randn(batch, total, hidden_dim, device=device)
        pos = torch.randn(batch, total, hidden_dim, device=device)
        mask = torch.ones(batch, total, device=device)
        with torch.no_grad():
            banded = measure(lambda: layer.banded_attention(src, mask, pos), device, repeats=repeats)
            dense = measure(lambda: layer.dense_attention(src, mask, pos), device, repeats=repeats)
            diff = (layer.banded_attention(src, mask, pos) - layer.dense_attention(src, mask, pos)).abs().max().item()
        rows.append(SoraRow(length, banded, dense, diff))
    return rows


def sora_table(rows: list[SoraRow]) -> BenchTable:
    return BenchTable(
        ["clips", "banded time", "dense time", "speed-up", "banded peak", "dense peak", "memory saved", "max |diff|"],
        [
            [str(r.clips), ms(r.banded.seconds), ms(r.dense.seconds), ratio(r.banded.seconds, r.dense.seconds),
             mb(r.banded.peak_bytes), mb(r.dense.peak_bytes), ratio(r.banded.peak_bytes, r.dense.peak_bytes),
             f"{r.max_abs_diff:.1e}"]
            for r in rows
        ],
    )
