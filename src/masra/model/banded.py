"""Banded (local-window) tensor helpers shared by SORA and LRCA.

A band of half-width ``w`` around clip ``i`` is the window of clips ``j = i + o - w`` for offsets
``o = 0 .. 2w``. Everything here is O(L·w) in time and memory, never O(L²).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def band_windows(x: torch.Tensor, band: int, fill: float = 0.0) -> torch.Tensor:
    """Sliding windows along dim 1: x [B, L, *F] -> [B, L, 2w+1, *F] with out[b, i, o] = x[b, i + o - w].

    Positions outside [0, L) hold ``fill``.
    """
    batch, length = x.shape[:2]
    feat_shape = x.shape[2:]
    flat = x.reshape(batch, length, -1)  # [B, L, F]
    padded = F.pad(flat, (0, 0, band, band), value=fill)  # [B, L + 2w, F]
    windows = padded.unfold(1, 2 * band + 1, 1)  # [B, L, F, 2w+1] (a view)
    return windows.movedim(-1, 2).reshape(batch, length, 2 * band + 1, *feat_shape)


def band_pair_mask(mask: torch.Tensor, band: int, include_self: bool = True) -> torch.Tensor:
    """Which (i, j) pairs of the band are both valid: mask [B, L] (float or bool) -> [B, L, 2w+1] bool."""
    valid = mask.bool()
    neighbours = band_windows(valid.unsqueeze(-1).float(), band).squeeze(-1).bool()  # [B, L, 2w+1]
    pairs = valid.unsqueeze(-1) & neighbours
    if not include_self:
        pairs[:, :, band] = False
    return pairs

