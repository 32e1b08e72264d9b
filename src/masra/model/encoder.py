"""Temporal self-attention encoder over [global token; clips] (text already dropped), post-norm like DETR."""

from __future__ import annotations

import copy

import torch
from torch import nn

from masra.model.attention import MultiheadAttention
from masra.model.dropout import Dropout
from masra.model.layers import FeedForward, run_layer


class EncoderLayer(nn.Module):
    """Self-attention with positions added to q and k only -> residual -> LN -> FFN.

    ``window`` > 0: each clip attends to the global token and the clips within ±window (linear time in L).
    """

    def __init__(
        self, d_model: int, nheads: int, dim_feedforward: int, dropout: float, activation: str, window: int = 0
    ) -> None:
        super().__init__()
        self.window = window
        self.self_attn = MultiheadAttention(d_model, nheads, dropout=dropout)
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, dim_feedforward, dropout, activation)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """src [B, S, d], pos [B, S, d], padding [B, S] bool (True = pad) -> [B, S, d]."""
        qk = src + pos
        attended = self.self_attn(qk, qk, src, padding, window=self.window)
        src = self.norm(src + self.dropout(attended))
        return self.ffn(src)


class TemporalEncoder(nn.Module):
    def __init__(self, num_layers: int, d_model: int, nheads: int, dim_feedforward: int, dropout: float,
                 activation: str, window: int = 0) -> None:
        super().__init__()
        layer = EncoderLayer(d_model, nheads, dim_feedforward, dropout, activation, window)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, src: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """src [B, S, d], pos [B, S, d], mask [B, S] float (1 = valid) -> memory [B, S, d]."""
        padding = ~mask.bool()
        for layer in self.layers:
            src = run_layer(layer, src, pos, padding)
        return src
