"""Sine position encodings: normalised 1-D positions for clips and (center, width) anchors for queries."""

from __future__ import annotations

import math

import torch


def _interleaved_sine(position: torch.Tensor, dim: int, temperature: float) -> torch.Tensor:
    """position [...] -> [..., dim] with sin on even and cos on odd channels, frequency 10000^(2*(i//2)/dim)."""
    index = torch.arange(dim, dtype=torch.float32, device=position.device)
    freqs = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / dim)  # [dim]
    angles = position.float()[..., None] / freqs  # [..., dim]
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


def video_position_encoding(video_mask: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sine encoding of clip positions normalised by the valid length: video_mask [B, L] -> [B, L, dim] float32.

    position_i = cumsum(mask)_i / (valid_len + 1e-6) * 2*pi, so a sample's encoding does not depend on how much
    padding follows it (padding is at the end of each row).
    """
    position = video_mask.float().cumsum(dim=1)  # [B, L]
    position = position / (position[:, -1:] + 1e-6) * (2 * math.pi)
    return _interleaved_sine(position, dim, temperature)


def anchor_sine_embedding(anchors: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sine embedding of (center, width) anchors in [0, 1]: [B, Q, 2] -> [B, Q, dim] float32 (dim/2 per coordinate)."""
    half = dim // 2
    center = _interleaved_sine(anchors[..., 0] * (2 * math.pi), half, temperature)  # [B, Q, dim/2]
    width = _interleaved_sine(anchors[..., 1] * (2 * math.pi), half, temperature)  # [B, Q, dim/2]
    return torch.cat([center, width], dim=-1)
