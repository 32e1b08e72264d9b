"""Dropout with a cheaper random mask on CPU.

PyTorch's CPU dropout draws one Bernoulli sample per element from its sequential Mersenne-Twister generator
(``bernoulli_``): about a quarter of a QD-DETR-sized training step on a 2-core CPU (docs/benchmarks.md). Here
each 64-bit draw of the same generator is cut into four 16-bit lanes and an element is kept when its lane lies
below a threshold, so a mask costs a quarter of the draws. The keep probability is thereby rounded to a
multiple of 1/65536 (p = 0.1 keeps 58982/65536 = 0.899994 instead of 0.9; p = 0.5 is exact) and the kept
elements are scaled by the inverse of that rounded probability, so the expectation is unchanged.

The draws come from torch's default CPU generator: ``torch.manual_seed`` and the RNG state saved with a
checkpoint make the masks reproducible, and activation checkpointing (which restores the RNG state before
recomputing) redraws the same masks. On other devices ``F.dropout`` is used: their generators are fast.

Attention weights are not dropped here: attention goes through ``F.scaled_dot_product_attention`` with its
own dropout (``masra.model.attention``). Writing the attention out with this mask was tried and raised the
whole-process peak of a MASRA step at 8 x 4,800 clips from 5.5 to 10.3 GiB (docs/benchmarks.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LANE_BITS = 16
LANES_PER_DRAW = 64 // LANE_BITS
LANE_VALUES = 2**LANE_BITS


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """A CPU bool mask of ``shape`` (True = keep, probability ≈ 1 - p) and the scale 1 / P(keep)."""
    kept_lanes = round((1.0 - p) * LANE_VALUES)
    count = math.prod(shape)
    draws = torch.empty(-(-count // LANES_PER_DRAW), dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    lanes = draws.view(torch.int16)[:count].view(shape)  # uniform on [-2^15, 2^15)
    return lanes < kept_lanes - LANE_VALUES // 2, LANE_VALUES / max(kept_lanes, 1)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with the cheaper mask on CPU (see the module docstring)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    mask, scale = keep_mask(x.shape, p)
    return x.mul(mask).mul_(scale)  # autograd keeps the bool mask only


class Dropout(nn.Module):
    """``nn.Dropout`` on :func:`dropout`; no parameters, so state dicts are unchanged."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
