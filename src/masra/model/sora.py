"""SORA: second-order relational attention (docs/method.md, "SORA").

First-order relation, kept on the band: Ã_ik = cos(h_i, h_k) if |i - k| <= w and both clips are valid, else 0.
Second-order relation: R2_ij = cos(Ã_i·, Ã_j·) for |i - j| <= w (two clips are related when they relate
to the same neighbours). Both are computed on the band only: O(L·w·d + L·w²) time, O(L·w²) memory, and a
clip's output depends on clips at most 2w away (plus the global token).
R2 biases a banded self-attention: clip i attends to the global token(s) and to the clips j with
|i - j| <= w, softmax(q_i·k_j/√dh + β_h·R2_ij); the global token(s) attend to every valid token, unbiased.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from masra.errors import MasraError
from masra.model.banded import band_pair_mask, band_windows
from masra.model.layers import FeedForward


# Below this many band widths of clips the dense path is used (it is faster there on CPU and GPU).
DENSE_MAX_BAND_MULTIPLE = 3
# Leading tokens of the encoder sequence that attend to and are attended by every clip (QD-DETR: one).
GLOBAL_TOKENS = 1


def dense_second_order(h: torch.Tensor, mask: torch.Tensor, band: int) -> torch.Tensor:
    """R2 as a full [B, L, L] matrix: Ã = band-restricted masked cosine, R2 = cosine of Ã's rows, on the band."""
    length = h.shape[1]
    idx = torch.arange(length, device=h.device)
    in_band = (idx[:, None] - idx[None, :]).abs() <= band  # [L, L]
    valid = mask.bool()
    pair = valid[:, :, None] & valid[:, None, :] & in_band  # [B, L, L]
    unit = F.normalize(h, dim=-1)
    first = (unit @ unit.transpose(1, 2)) * pair.to(unit.dtype)
    rows = F.normalize(first, dim=-1)
    return (rows @ rows.transpose(1, 2)) * pair.to(unit.dtype)


def second_order_relation(h: torch.Tensor, mask: torch.Tensor, band: int) -> torch.Tensor:
    """Banded R2: h [B, L, d], mask [B, L] -> [B, L, 2w+1] with out[b, i, o] = R2[b, i, i + o - w].

    Pairs with a padded or out-of-range clip are 0.
    """
    w = band
    pairs = band_pair_mask(mask, w)  # [B, L, 2w+1]
    unit = F.normalize(h, dim=-1)
    first = torch.einsum("bld,blod->blo", unit, band_windows(unit, w)) * pairs.to(unit.dtype)  # Ã [B, L, 2w+1]
    # Row j = i + o - w of Ã, re-indexed so that slot p refers to the same clip k = i + p - w as row i:
    # Ã[j, p - o + w], i.e. index p - o + 2w of row j padded by w zeros on each side.
    neighbour_rows = F.pad(band_windows(first, w), (w, w))  # [B, L, 2w+1 (o), 4w+1]
    slots = torch.arange(2 * w + 1, device=h.device)
    index = slots.view(1, -1) - slots.view(-1, 1) + 2 * w  # [2w+1 (o), 2w+1 (p)]
    aligned = neighbour_rows.gather(-1, index.expand(*first.shape[:2], -1, -1))  # [B, L, 2w+1 (o), 2w+1 (p)]
    dot = torch.einsum("blp,blop->blo", first, aligned)  # Σ_k Ã_ik Ã_jk
    # ‖Ã_i·‖ >= Ã_ii = 1 for a valid clip; the clamp only guards padded rows.
    norm = first.pow(2).sum(-1).clamp_min(1e-12).sqrt()  # [B, L]
    norm_pairs = norm.unsqueeze(-1) * band_windows(norm.unsqueeze(-1), w, fill=1.0).squeeze(-1)
    return dot / norm_pairs * pairs.to(dot.dtype)


class SORALayer(nn.Module):
    """A post-norm encoder layer whose self-attention is banded and biased by β·R2.

    The sequence is [global token ; clips] (QD-DETR's one leading global token, ``GLOBAL_TOKENS``); the global
    token sees everything.
    """

    def __init__(
        self,
        d_model: int,
        nheads: int,
        dim_feedforward: int,
        dropout: float = 0.1,
        band: int = 16,
        beta_init: float = 1.0,
        activation: str = "prelu",
    ) -> None:
        super().__init__()
        if d_model % nheads:
            raise MasraError(f"hidden_dim {d_model} is not divisible by nheads {nheads}", field="model.nheads")
        if band < 1:
            raise MasraError(f"must be at least 1, got {band}", field="model.sora.band")
        self.nheads = nheads
        self.head_dim = d_model // nheads
        self.band = band
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.beta = nn.Parameter(torch.full((nheads,), float(beta_init)))  # one learnable β per head
        self.attn_dropout = nn.Dropout(dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, dim_feedforward, dropout, activation)

    def attention(self, src: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        """src [B, T, d] = [global ; clips], mask [B, T] float, pos [B, T, d] or None -> [B, T, d].

        Both paths compute the same function. The banded one is O(L·w); on short videos, where the band
        covers most of the clips anyway, the dense one is faster (``masra bench sora`` measures both).
        """
        clips = src.shape[1] - GLOBAL_TOKENS
        if clips <= DENSE_MAX_BAND_MULTIPLE * (2 * self.band + 1):
            return self.dense_attention(src, mask, pos)
        return self.banded_attention(src, mask, pos)

    def dense_attention(self, src: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        """The attention with full [T, T] score matrices, masked to the band: O(L²)."""
        batch, total, d = src.shape
        g, w, heads, dh = GLOBAL_TOKENS, self.band, self.nheads, self.head_dim
        qk_in = src if pos is None else src + pos
        q = self.q_proj(qk_in).view(batch, total, heads, dh).transpose(1, 2)  # [B, H, T, dh]
        k = self.k_proj(qk_in).view(batch, total, heads, dh).transpose(1, 2)
        v = self.v_proj(src).view(batch, total, heads, dh).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # [B, H, T, T]
        relation = dense_second_order(src[:, g:], mask[:, g:], w)  # [B, L, L]
        bias = F.pad(relation, (g, 0, g, 0))  # [B, T, T], zero on the global rows/columns
        scores = scores + self.beta.view(1, heads, 1, 1).to(scores.dtype) * bias.unsqueeze(1).to(scores.dtype)
        idx = torch.arange(total, device=src.device)
        allowed = ((idx[:, None] - idx[None, :]).abs() <= w) | (idx[:, None] < g) | (idx[None, :] < g)  # [T, T]
        allowed = allowed.unsqueeze(0) & mask.bool().unsqueeze(1)  # [B, T, T]
        scores = scores.masked_fill(~allowed.unsqueeze(1), torch.finfo(scores.dtype).min)
        out = (self.attn_dropout(scores.softmax(-1)) @ v).transpose(1, 2).reshape(batch, total, d)
        return self.out_proj(out)

    def banded_attention(self, src: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        """The attention computed on the band only: O(L·w) time and memory."""
        batch, total, _ = src.shape
        g, heads, dh, w = GLOBAL_TOKENS, self.nheads, self.head_dim, self.band
        qk_in = src if pos is None else src + pos
        q = self.q_proj(qk_in).view(batch, total, heads, dh)  # [B, T, H, dh]
        k = self.k_proj(qk_in).view(batch, total, heads, dh)
        v = self.v_proj(src).view(batch, total, heads, dh)
        valid = mask.bool()  # [B, T]
        scale = 1.0 / math.sqrt(dh)

        # Clip rows: keys = global tokens + the band of clips around each clip.
        clip_mask = mask[:, g:]
        q_clip = q[:, g:]  # [B, L, H, dh]
        k_band = band_windows(k[:, g:], w)  # [B, L, 2w+1, H, dh]
        v_band = band_windows(v[:, g:], w)
        relation = second_order_relation(src[:, g:], clip_mask, w)  # [B, L, 2w+1]
        band_scores = torch.einsum("blhe,blohe->bhlo", q_clip, k_band) * scale  # [B, H, L, 2w+1]
        band_scores = band_scores + self.beta.view(1, heads, 1, 1).to(q.dtype) * relation.unsqueeze(1)
        key_in_band = band_windows(clip_mask.unsqueeze(-1), w).squeeze(-1).bool()  # [B, L, 2w+1]
        band_scores = band_scores.masked_fill(~key_in_band.unsqueeze(1), torch.finfo(band_scores.dtype).min)
        to_global = torch.einsum("blhe,bghe->bhlg", q_clip, k[:, :g]) * scale  # [B, H, L, G]
        to_global = to_global.masked_fill(~valid[:, None, None, :g], torch.finfo(to_global.dtype).min)
        attn = self.attn_dropout(torch.cat([to_global, band_scores], dim=-1).softmax(-1))
        clip_out = torch.einsum("bhlg,bghe->blhe", attn[..., :g], v[:, :g]) + torch.einsum(
            "bhlo,blohe->blhe", attn[..., g:], v_band
        )  # [B, L, H, dh]

        # Global rows: ordinary attention over every valid token.
        global_scores = torch.einsum("bghe,bthe->bhgt", q[:, :g], k) * scale  # [B, H, G, T]
        global_scores = global_scores.masked_fill(~valid[:, None, None, :], torch.finfo(global_scores.dtype).min)
        global_out = torch.einsum("bhgt,bthe->bghe", self.attn_dropout(global_scores.softmax(-1)), v)  # [B, G, H, dh]

        out = torch.cat([global_out, clip_out], dim=1).reshape(batch, total, -1)
        return self.out_proj(out)

    def forward(self, src: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """src [B, T, d], mask [B, T] float (1 = valid), pos [B, T, d] or None -> [B, T, d]."""
        src = self.norm(src + self.dropout(self.attention(src, mask, pos)))
        return self.ffn(src)
