"""SORA: second-order relational attention (docs/method.md, "SORA").

First-order relation, kept on the band: Ã_ik = cos(f_i, f_k) if |i - k| <= w and both clips are valid, else 0,
where f are the relation features: LRCA's projection P of the clips when LRCA is on (the relation LRCA aligns
with the captions), the clips themselves otherwise.
Second-order relation: R2_ij = cos(Ã_i·|K_ij, Ã_j·|K_ij) for |i - j| <= w, the cosine over the overlap
K_ij = {k : |i - k| <= w and |j - k| <= w} of the two windows only (two clips are related when they relate
the same way to their common neighbours; identical clips give R2 = 1 at every offset of the band).
Both are computed on the band only: O(L·w·d + L·w²) time, O(L·w²) memory, and a clip's output depends on
clips at most 2w away (plus the global token).
R2 biases a banded self-attention: clip i attends to the global token(s) and to the clips j with
|i - j| <= w, softmax(q_i·k_j/√dh + β_h·R2_ij); the global token(s) attend to every valid token, unbiased.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masra.errors import MasraError
from masra.model.banded import band_pair_mask, band_windows
from masra.model.dropout import Dropout
from masra.model.layers import FeedForward


Stats = dict[str, Tensor]  # diagnostics of one pass: name -> 0-d tensor

# Below this many band widths of clips the dense path is used (it is faster there on CPU and GPU).
DENSE_MAX_BAND_MULTIPLE = 3
# Leading tokens of the encoder sequence that attend to and are attended by every clip (QD-DETR: one).
GLOBAL_TOKENS = 1


def dense_second_order(h: torch.Tensor, mask: torch.Tensor, band: int) -> torch.Tensor:
    """R2 as a full [B, L, L] matrix: Ã = band-restricted masked cosine, R2 = cosine of Ã's rows over the
    overlap of the two windows, on the band. O(L²): the fast path for short videos."""
    length = h.shape[1]
    idx = torch.arange(length, device=h.device)
    in_band = ((idx[:, None] - idx[None, :]).abs() <= band).to(h.dtype)  # [L, L]
    valid = mask.bool()
    pair = valid[:, :, None] & valid[:, None, :] & in_band.bool()  # [B, L, L]
    unit = F.normalize(h, dim=-1)
    first = (unit @ unit.transpose(1, 2)) * pair.to(unit.dtype)  # Ã [B, L, L]
    dot = first @ first.transpose(1, 2)  # Σ_k Ã_ik Ã_jk; only k in both windows contributes
    # ‖Ã_i· restricted to j's window‖²: [B, L (i), L (j)]; >= Ã_ii² = 1 for valid pairs.
    norm_i = (first * first) @ in_band
    norms = (norm_i * norm_i.transpose(1, 2)).clamp_min(1e-12).sqrt()
    return dot / norms * pair.to(unit.dtype)


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
    # Norms over the overlap only: slot p of i's window is in j's window when |p - o| <= w; aligned is
    # already zero outside j's window. Both are >= 1 for a valid pair (k = i and k = j lie in the overlap).
    overlap = ((slots.view(1, -1) - slots.view(-1, 1)).abs() <= w).to(first.dtype)  # [2w+1 (o), 2w+1 (p)]
    norm_i = (first * first) @ overlap  # [B, L, 2w+1 (o)] (overlap is symmetric)
    norm_j = aligned.pow(2).sum(-1)  # [B, L, 2w+1 (o)]
    return dot / (norm_i * norm_j).clamp_min(1e-12).sqrt() * pairs.to(dot.dtype)


def biased_softmax(
    scores: torch.Tensor,
    bias: torch.Tensor,
    allowed: torch.Tensor,
    stats: dict[str, torch.Tensor] | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(scores + bias) over the allowed keys; scores [B, H, R, K], bias and allowed broadcastable.

    With ``stats``, records ``sora_attention_moved``: the share of the attention the bias moves, i.e. the
    total-variation distance ½Σ|p - p₀| to the unbiased softmax, averaged over ``rows`` ([B, 1, R] bool).
    """
    lowest = torch.finfo(scores.dtype).min
    probs = (scores + bias).masked_fill(~allowed, lowest).softmax(-1)
    if stats is not None and rows is not None:
        with torch.no_grad():
            plain = scores.masked_fill(~allowed, lowest).softmax(-1)
            moved = 0.5 * (probs - plain).abs().sum(-1).float()  # [B, H, R]
            rows = rows.expand_as(moved)
            stats["sora_attention_moved"] = moved[rows].mean() if rows.any() else moved.sum() * 0
    return probs


class SORALayer(nn.Module):
    """A post-norm encoder layer whose self-attention is banded and biased by β·R2.

    The sequence is [global token ; clips] (QD-DETR's one leading global token, ``GLOBAL_TOKENS``); the global
    token sees everything. Its matrices are Xavier-initialised like every other transformer layer of the model.
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
        learnable_beta: bool = True,
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
        beta = torch.full((nheads,), float(beta_init))  # one β per head
        if learnable_beta:
            self.beta = nn.Parameter(beta)
        else:  # the control "SORA with β fixed": the layer without its relational bias (β = 0)
            self.register_buffer("beta", beta)
        self.attn_dropout = Dropout(dropout)
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, dim_feedforward, dropout, activation)
        for param in self.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)

    def attention(
        self, src: Tensor, mask: Tensor, pos: Tensor | None, relation_feats: Tensor | None = None, stats: Stats | None = None
    ) -> Tensor:
        """src [B, T, d] = [global ; clips], mask [B, T] float, pos [B, T, d] or None, relation_feats
        [B, L, D] (the features whose cosine is the first-order relation; default: the clips of src)
        -> [B, T, d]. ``stats`` (a dict, or None) receives ``sora_attention_moved``.

        Both paths compute the same function. The banded one is O(L·w); on short videos, where the band
        covers most of the clips anyway, the dense one is faster (``masra bench sora`` measures both).
        """
        clips = src.shape[1] - GLOBAL_TOKENS
        path = self.dense_attention if clips <= DENSE_MAX_BAND_MULTIPLE * (2 * self.band + 1) else self.banded_attention
        return path(src, mask, pos, relation_feats, stats)

    def _project(self, src: torch.Tensor, pos: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """q, k, v as [B, T, H, dh] (positions on queries and keys only)."""
        batch, total, _ = src.shape
        qk_in = src if pos is None else src + pos
        shape = (batch, total, self.nheads, self.head_dim)
        return self.q_proj(qk_in).view(shape), self.k_proj(qk_in).view(shape), self.v_proj(src).view(shape)

    def dense_attention(
        self, src: Tensor, mask: Tensor, pos: Tensor | None, relation_feats: Tensor | None = None, stats: Stats | None = None
    ) -> Tensor:
        """The attention with full [T, T] score matrices, masked to the band: O(L²)."""
        batch, total, d = src.shape
        g, w, heads, dh = GLOBAL_TOKENS, self.band, self.nheads, self.head_dim
        q, k, v = (x.transpose(1, 2) for x in self._project(src, pos))  # [B, H, T, dh]
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # [B, H, T, T]
        feats = src[:, g:] if relation_feats is None else relation_feats
        relation = dense_second_order(feats, mask[:, g:], w)  # [B, L, L]
        bias = F.pad(relation, (g, 0, g, 0))  # [B, T, T], zero on the global rows/columns
        bias = self.beta.view(1, heads, 1, 1).to(scores.dtype) * bias.unsqueeze(1).to(scores.dtype)
        idx = torch.arange(total, device=src.device)
        allowed = ((idx[:, None] - idx[None, :]).abs() <= w) | (idx[:, None] < g) | (idx[None, :] < g)  # [T, T]
        allowed = (allowed.unsqueeze(0) & mask.bool().unsqueeze(1)).unsqueeze(1)  # [B, 1, T, T]
        clip_rows = (mask.bool() & (idx >= g)).unsqueeze(1)  # [B, 1, T]: the rows the bias acts on
        attn = biased_softmax(scores, bias, allowed, stats, clip_rows)
        out = (self.attn_dropout(attn) @ v).transpose(1, 2).reshape(batch, total, d)
        return self.out_proj(out)

    def banded_attention(
        self, src: Tensor, mask: Tensor, pos: Tensor | None, relation_feats: Tensor | None = None, stats: Stats | None = None
    ) -> Tensor:
        """The attention computed on the band only: O(L·w) time and memory."""
        batch, total, _ = src.shape
        g, heads, w = GLOBAL_TOKENS, self.nheads, self.band
        q, k, v = self._project(src, pos)  # [B, T, H, dh]
        valid = mask.bool()  # [B, T]
        scale = 1.0 / math.sqrt(self.head_dim)

        # Clip rows: keys = global tokens + the band of clips around each clip.
        clip_mask = mask[:, g:]
        q_clip = q[:, g:]  # [B, L, H, dh]
        k_band = band_windows(k[:, g:], w)  # [B, L, 2w+1, H, dh]
        v_band = band_windows(v[:, g:], w)
        feats = src[:, g:] if relation_feats is None else relation_feats
        relation = second_order_relation(feats, clip_mask, w)  # [B, L, 2w+1]
        band_scores = torch.einsum("blhe,blohe->bhlo", q_clip, k_band) * scale  # [B, H, L, 2w+1]
        to_global = torch.einsum("blhe,bghe->bhlg", q_clip, k[:, :g]) * scale  # [B, H, L, G]
        key_in_band = band_windows(clip_mask.unsqueeze(-1), w).squeeze(-1).bool()  # [B, L, 2w+1]
        allowed = torch.cat([valid[:, None, :g].expand(-1, key_in_band.shape[1], -1), key_in_band], dim=-1)  # [B, L, G+2w+1]
        bias = F.pad(relation, (g, 0)).unsqueeze(1) * self.beta.view(1, heads, 1, 1).to(q.dtype)  # [B, H, L, G+2w+1]
        attn = self.attn_dropout(
            biased_softmax(
                torch.cat([to_global, band_scores], dim=-1), bias, allowed.unsqueeze(1), stats, clip_mask.bool().unsqueeze(1)
            )
        )
        clip_out = torch.einsum("bhlg,bghe->blhe", attn[..., :g], v[:, :g]) + torch.einsum(
            "bhlo,blohe->blhe", attn[..., g:], v_band
        )  # [B, L, H, dh]

        # Global rows: ordinary attention over every valid token.
        global_scores = torch.einsum("bghe,bthe->bhgt", q[:, :g], k) * scale  # [B, H, G, T]
        global_scores = global_scores.masked_fill(~valid[:, None, None, :], torch.finfo(global_scores.dtype).min)
        global_out = torch.einsum("bhgt,bthe->bghe", self.attn_dropout(global_scores.softmax(-1)), v)  # [B, G, H, dh]

        out = torch.cat([global_out, clip_out], dim=1).reshape(batch, total, -1)
        return self.out_proj(out)

    def forward(
        self, src: Tensor, mask: Tensor, pos: Tensor | None = None, relation_feats: Tensor | None = None,
        stats: Stats | None = None,
    ) -> Tensor:
        """src [B, T, d], mask [B, T] float (1 = valid), pos [B, T, d] or None -> [B, T, d]."""
        src = self.norm(src + self.dropout(self.attention(src, mask, pos, relation_feats, stats)))
        return self.ffn(src)
