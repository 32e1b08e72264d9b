"""Banded (local-window) tensor helpers shared by SORA and LRCA.

A band of half-width ``w`` around clip ``i`` is the window of clips ``j = i + o - w`` for offsets
``o = 0 .. 2w``. Everything here is O(L·w) in time and memory, never O(L²), and nothing builds a
[B, L, 2w+1, D] window of feature vectors: band quantities are computed in blocks.

Block layout: the clips are cut into ``nb = ceil(L / w)`` blocks of ``w`` (the last one zero-padded).
Query row ``r`` of block ``n`` is clip ``n·w + r``; key slot ``s`` (0 .. 3w-1) of block ``n`` is clip
``(n - 1)·w + s``, so the 3w key slots of a block (its own clips and both neighbouring blocks) hold the
whole band of each of its rows: clip ``j = i + o - w`` of row ``r`` sits in slot ``s = r + o``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def band_windows(x: torch.Tensor, band: int, fill: float = 0.0) -> torch.Tensor:
    """Sliding windows along dim 1: x [B, L, *F] -> [B, L, 2w+1, *F] with out[b, i, o] = x[b, i + o - w].

    Positions outside [0, L) hold ``fill``. The output is 2w+1 times the input: use it for per-clip scalars
    (masks), not for feature vectors (see :func:`band_dot`).
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


def block_count(length: int, band: int) -> int:
    """Number of blocks of ``band`` clips covering ``length`` clips."""
    return -(-length // band)


def query_blocks(x: torch.Tensor, band: int) -> torch.Tensor:
    """x [B, L, *F] -> [B, nb, w, *F]: row r of block n is clip n·w + r (zeros past the end)."""
    batch, length = x.shape[:2]
    blocks = block_count(length, band)
    flat = x.reshape(batch, length, -1)
    padded = F.pad(flat, (0, 0, 0, blocks * band - length))  # [B, nb·w, F]
    return padded.view(batch, blocks, band, *x.shape[2:])


def key_blocks(x: torch.Tensor, band: int, fill: float = 0.0) -> torch.Tensor:
    """x [B, L, *F] -> [B, nb, 3w, *F]: slot s of block n is clip (n - 1)·w + s (``fill`` outside [0, L)).

    3 times the input, whatever w is."""
    batch, length = x.shape[:2]
    blocks = block_count(length, band)
    flat = x.reshape(batch, length, -1)
    padded = F.pad(flat, (0, 0, band, band + blocks * band - length), value=fill)  # [B, (nb + 2)·w, F]
    windows = padded.unfold(1, 3 * band, band)  # [B, nb, F, 3w] (a view)
    return windows.movedim(-1, 2).reshape(batch, blocks, 3 * band, *x.shape[2:])


def halo_blocks(x: torch.Tensor, band: int) -> torch.Tensor:
    """x [B, L, *F] -> [nb + 2, B, w, *F], contiguous: entry n + 1 is block n (zeros outside [0, L)), with a
    zero block before the first and after the last. For every block n at once, ``out[m : m + nb]``
    (m = 0, 1, 2) are its blocks n - 1, n and n + 1: the key slots m·w .. m·w + w - 1 of the block layout,
    as views that batched matrix products take without copying."""
    batch, length = x.shape[:2]
    blocks = block_count(length, band)
    flat = x.reshape(batch, length, -1)
    padded = F.pad(flat, (0, 0, band, band + blocks * band - length))  # [B, (nb + 2)·w, F]
    return padded.view(batch, blocks + 2, band, *x.shape[2:]).transpose(0, 1).contiguous()


def block_band_mask(band: int, device: torch.device | None = None) -> torch.Tensor:
    """[w, 3w] bool: key slot s lies in the band of query row r (r <= s <= r + 2w)."""
    slot = torch.arange(3 * band, device=device)
    row = torch.arange(band, device=device).unsqueeze(1)
    return (slot >= row) & (slot <= row + 2 * band)


def _band_slots(band: int, device: torch.device) -> torch.Tensor:
    """[w, 2w+1]: the key slot of offset o in query row r, r + o."""
    return torch.arange(band, device=device).unsqueeze(1) + torch.arange(2 * band + 1, device=device)


def blocks_to_band(blocks: torch.Tensor, length: int) -> torch.Tensor:
    """Block layout [B, nb, w, 3w] -> band layout [B, L, 2w+1]: out[b, i, o] = the pair (i, i + o - w)."""
    batch, nb, band, _ = blocks.shape
    index = _band_slots(band, blocks.device).expand(batch, nb, -1, -1)  # [B, nb, w, 2w+1]
    return blocks.gather(-1, index).reshape(batch, nb * band, 2 * band + 1)[:, :length]


def band_to_blocks(band_values: torch.Tensor, band: int) -> torch.Tensor:
    """Band layout [B, L, 2w+1] -> block layout [B, nb, w, 3w], zero outside the band (inverse of
    :func:`blocks_to_band`)."""
    rows = query_blocks(band_values, band)  # [B, nb, w, 2w+1]
    index = _band_slots(band, band_values.device).expand_as(rows)
    return rows.new_zeros(*rows.shape[:3], 3 * band).scatter(-1, index, rows)


def band_dot(x: torch.Tensor, y: torch.Tensor, band: int) -> torch.Tensor:
    """x, y [B, L, D] -> [B, L, 2w+1]: out[b, i, o] = x_i · y_{i+o-w} (0 outside the sequence).

    Blocked: [w, D] x [D, 3w] products per block, then the band is read out; O(L·w + L·D) memory."""
    scores = query_blocks(x, band) @ key_blocks(y, band).transpose(-1, -2)  # [B, nb, w, 3w]
    return blocks_to_band(scores, x.shape[1])
