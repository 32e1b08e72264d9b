"""DETR's decoder (as in Moment-DETR): learned query positions, plain cross-attention to the memory.

Each layer: self-attention over the queries (q = k = content + query position), cross-attention from the
queries (+ position) to the memory (+ its position), FFN; all post-norm. The content starts at zero; every
layer's output goes through one shared LayerNorm (DETR's return_intermediate).
"""

from __future__ import annotations

import torch
from torch import nn

from masra.model.attention import MultiheadAttention
from masra.model.dropout import Dropout
from masra.model.layers import FeedForward


class QueryDecoderLayer(nn.Module):
    def __init__(self, d_model: int, nheads: int, dim_feedforward: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nheads, dropout=dropout)
        self.dropout1 = Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MultiheadAttention(d_model, nheads, dropout=dropout)
        self.dropout2 = Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, dim_feedforward, dropout, activation)

    def forward(
        self,
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        memory_padding: torch.Tensor,
    ) -> torch.Tensor:
        """tgt [B, Q, d], query_pos [B, Q, d], memory [B, S, d], memory_pos [B, S, d], memory_padding [B, S]
        bool (True = pad) -> [B, Q, d]."""
        qk = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(qk, qk, tgt)))
        attended = self.cross_attn(tgt + query_pos, memory + memory_pos, memory, memory_padding)
        tgt = self.norm2(tgt + self.dropout2(attended))
        return self.ffn(tgt)


class QueryDecoder(nn.Module):
    """Returns the normalised hidden states of every layer [layers, B, Q, d]."""

    def __init__(
        self, num_layers: int, d_model: int, nheads: int, dim_feedforward: int, dropout: float, activation: str
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            QueryDecoderLayer(d_model, nheads, dim_feedforward, dropout, activation) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)  # shared by all layers' outputs

    def forward(
        self, query_pos: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, memory_mask: torch.Tensor
    ) -> torch.Tensor:
        """query_pos [Q, d] (the learned queries), memory [B, S, d], memory_pos [B, S, d], memory_mask [B, S]
        float (1 = valid) -> [layers, B, Q, d]."""
        padding = ~memory_mask.bool()
        query_pos = query_pos.to(memory.dtype).unsqueeze(0).expand(memory.shape[0], -1, -1)  # [B, Q, d]
        output = torch.zeros_like(query_pos)  # content starts empty
        hidden = []
        for layer in self.layers:
            output = layer(output, query_pos, memory, memory_pos, padding)
            hidden.append(self.norm(output))
        return torch.stack(hidden)
