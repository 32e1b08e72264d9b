"""SORA written the naive way, with full [L, L] relation and score matrices: the O(L²) baseline the
banded implementation (masra.model.sora) is measured against, and the reference it must equal."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from masra.model.sora import SORALayer


def dense_second_order(h: torch.Tensor, mask: torch.Tensor, band: int) -> torch.Tensor:
    """R2 as a full [B, L, L] matrix: Ã = band-restricted masked cosine, R2 = cosine of Ã's rows, on the band."""
    length = h.shape[1]
    idx = torch.arange(length, device=h.device)
    in_band = (idx[:, None] - idx[None, :]).abs() <= band  # [L, L]
    valid = mask.bool()
    pair = valid[:, :, None] & valid[:, None, :] & in_band  # [B, L, L]
    unit = F.normalize(h, dim=-1)
    first = (unit @ unit.transpose(1, 2)) * pair
    rows = F.normalize(first, dim=-1)
    return (rows @ rows.transpose(1, 2)) * pair


def dense_sora_attention(layer: SORALayer, src: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``layer.attention`` computed with full [T, T] score matrices (same weights): src [B, T, d] -> [B, T, d]."""
    batch, total, d = src.shape
    g, w, heads = layer.num_global, layer.band, layer.nheads
    dh = d // heads
    qk_in = src + pos
    q = layer.q_proj(qk_in).view(batch, total, heads, dh).transpose(1, 2)  # [B, H, T, dh]
    k = layer.k_proj(qk_in).view(batch, total, heads, dh).transpose(1, 2)
    v = layer.v_proj(src).view(batch, total, heads, dh).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # [B, H, T, T]
    bias = torch.zeros(batch, total, total, dtype=src.dtype, device=src.device)
    bias[:, g:, g:] = dense_second_order(src[:, g:], mask[:, g:], w)
    scores = scores + layer.beta.view(1, heads, 1, 1) * bias[:, None]
    idx = torch.arange(total, device=src.device)
    allowed = ((idx[:, None] - idx[None, :]).abs() <= w) | (idx[:, None] < g) | (idx[None, :] < g)  # [T, T]
    allowed = allowed[None] & mask.bool()[:, None, :]  # [B, T, T]
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, total, d)
    return layer.out_proj(out)
