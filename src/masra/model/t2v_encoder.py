"""Text-to-video interaction (QD-DETR's T2V encoder): every clip cross-attends to the query tokens.

The cross-attention is a replaceable component: any module with the call
``attention(query [B, L, d], key [B, N, d], value [B, N, d], key_mask [B, N] float, **kwargs)
-> (output [B, L, d], relevance [B, L] or None)`` can stand in for :class:`TextCrossAttention`
(DAI's decoupled attention over [query tokens; codebook] is one).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from masra.model.attention import MultiheadAttention
from masra.model.dropout import Dropout
from masra.model.layers import FeedForward, run_layer


class TextCrossAttention(nn.Module):
    """Plain multi-head cross-attention from clips to query tokens; padded tokens are never attended.

    QD-DETR also passes an attention mask that blocks (padded clip, padded token) pairs; that mask is a
    subset of the key-padding mask, so the key-padding mask alone gives the same result.
    """

    def __init__(self, d_model: int, nheads: int, dropout: float) -> None:
        super().__init__()
        self.attn = MultiheadAttention(d_model, nheads, dropout=dropout)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_mask: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        return self.attn(query, key, value, ~key_mask.bool()), None


class T2VEncoderLayer(nn.Module):
    """Clips attend to text (q = clip + pos, k = text, v = text), then QD-DETR's FFN wiring:
    x = clip + attn;  out = LN2(x + FFN(LN1(x))) — the FFN reads the normalised x, but its residual is
    the un-normalised x (unlike the temporal encoder's standard post-norm layer)."""

    def __init__(
        self, cross_attention: nn.Module, d_model: int, dim_feedforward: int, dropout: float, activation: str
    ) -> None:
        super().__init__()
        self.cross_attn = cross_attention
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, dim_feedforward, dropout, activation)

    def forward(
        self,
        video: torch.Tensor,
        video_pos: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        **attention_kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """video [B, L, d], video_pos [B, L, d], text [B, N, d], text_mask [B, N] float -> ([B, L, d], relevance)."""
        # Text positions are zeros in QD-DETR (use_txt_pos off), so the key is the text itself.
        attended, relevance = self.cross_attn(video + video_pos, text, text, text_mask, **attention_kwargs)
        video = video + self.dropout(attended)
        return self.ffn(self.norm(video), residual=video), relevance


class T2VEncoder(nn.Module):
    """A stack of T2V layers. Returns the text-conditioned clips and each layer's relevance (None for plain attention)."""

    def __init__(
        self,
        make_attention: Callable[[], nn.Module],
        num_layers: int,
        d_model: int,
        dim_feedforward: int,
        dropout: float,
        activation: str,
    ) -> None:
        super().__init__()
        layer = T2VEncoderLayer(make_attention(), d_model, dim_feedforward, dropout, activation)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(
        self,
        video: torch.Tensor,
        video_pos: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        **attention_kwargs: Any,
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        relevances = []
        for layer in self.layers:
            video, relevance = run_layer(layer, video, video_pos, text, text_mask, **attention_kwargs)
            relevances.append(relevance)
        return video, relevances
