"""SORA: second-order relational attention (docs/method.md, "SORA").

First-order relation, kept on the band and centred per row: Ã_ik = cos(f_i, f_k) - mean_{k'} cos(f_i, f_k')
for |i - k| <= w with both clips valid (the mean over the same window), else 0, where f are the relation
features: LRCA's projection P of the clips when LRCA is on (the relation LRCA aligns with the captions), the
clips themselves otherwise. Centred because clip features share a large common direction: every cosine is
then near the same value (~0.8), and two such rows have a cosine near 1 whatever the content; centred, a row
keeps only which neighbours the clip is closer to than its average.
Second-order relation: R2_ij = cos(Ã_i·|K_ij, Ã_j·|K_ij) for |i - j| <= w, the cosine over the overlap
K_ij = {k : |i - k| <= w and |j - k| <= w} of the two windows only (two clips are related when they relate
the same way to their common neighbours); a row without spread (all neighbours alike) relates 0 to all.
Both are computed on the band only: O(L·w·d + L·w²) time, O(L·(w + d)) memory, and a clip's output depends on
clips at most 2w away (plus the leading context tokens).
The sequence is [context tokens ; clips]: QD-DETR's one global token, or Moment-DETR's query tokens (its joint
encoder's sequence with the tokens moved in front). R2 biases a banded self-attention: clip i attends to the
context tokens and to the clips j with
|i - j| <= w, softmax(q_i·k_j/√dh + β_h·(R2_ij - R̄2_i)); the context tokens attend to every valid token,
unbiased. R̄2_i is the mean of R2 over the clips row i attends to (``centre_rows``): a bias that is the same
for every clip would only move mass between the context tokens (bias 0) and the clips, with no content; the
centred bias moves attention between clips. The control ``relation="row_mean"`` replaces R2 by its row mean,
which the centring turns into a zero bias: the layer then equals β = 0 exactly (tests/model/test_sora.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masra.errors import MasraError
from masra.model.banded import block_band_mask, blocks_to_band, halo_blocks, key_blocks, query_blocks
from masra.model.dropout import Dropout
from masra.model.layers import FeedForward, run_layer
from masra.model.parts.base import Outputs, Part, PartContext, PartModule, Stats, check_choice


@dataclass
class SORAConfig:
    enabled: bool = False
    band: int = 16
    beta_init: float = 1.0
    # False keeps β at beta_init (the ablation control "SORA with β fixed at 0": the added layer alone).
    learnable_beta: bool = True
    # "second_order": the bias is the row-centred R2; "row_mean" (ablation control): R2 replaced by its row
    # mean, which the centring makes a zero bias (docs/method.md, "SORA").
    relation: str = "second_order"
    # False: the layer is attention -> residual -> LN; True (the former layer): followed by a feed-forward
    # sub-layer like every other encoder layer's, more than half of the layer's cost for no gain the ablation
    # resolved (docs/method.md, "SORA").
    feed_forward: bool = False


# Below this many band widths of clips the dense path is used (it is faster there on CPU and GPU).
DENSE_MAX_BAND_MULTIPLE = 3
# Leading context tokens of QD-DETR's encoder sequence (its global token), the layer's default; Moment-DETR's
# sequence leads with its N query tokens (``context`` argument).
GLOBAL_TOKENS = 1
# What biases the attention: the second-order relation, or (ablation control) its per-row mean.
RELATIONS = ("second_order", "row_mean")


def centre_rows(relation: Tensor, pairs: Tensor, mode: str = "second_order") -> Tensor:
    """relation minus its mean over each row's pairs (the last axis), zero off the pairs.

    ``mode="row_mean"`` (the ablation control) replaces the relation by that mean before centring: zero."""
    pairs = pairs.to(relation.dtype)
    mean = (relation * pairs).sum(-1, keepdim=True) / pairs.sum(-1, keepdim=True).clamp_min(1.0)
    if mode == "row_mean":
        relation = mean.expand_as(relation)
    return (relation - mean) * pairs


def dense_second_order(h: torch.Tensor, mask: torch.Tensor, band: int) -> torch.Tensor:
    """R2 as a full [B, L, L] matrix: Ã = band-restricted masked cosine, centred per row over its window,
    R2 = cosine of Ã's rows over the overlap of the two windows, on the band. O(L²): the fast path for short
    videos."""
    length = h.shape[1]
    idx = torch.arange(length, device=h.device)
    in_band = ((idx[:, None] - idx[None, :]).abs() <= band).to(h.dtype)  # [L, L]
    valid = mask.bool()
    pair = valid[:, :, None] & valid[:, None, :] & in_band.bool()  # [B, L, L]
    unit = F.normalize(h, dim=-1)
    first = centre_rows(unit @ unit.transpose(1, 2), pair)  # Ã [B, L, L], centred over each window
    dot = first @ first.transpose(1, 2)  # Σ_k Ã_ik Ã_jk; only k in both windows contributes
    # ‖Ã_i· restricted to j's window‖²: [B, L (i), L (j)].
    norm_i = (first * first) @ in_band
    norms = (norm_i * norm_i.transpose(1, 2)).clamp_min(1e-12).sqrt()
    return dot / norms * pair.to(unit.dtype)


def second_order_blocks(h: torch.Tensor, mask: torch.Tensor, band: int) -> torch.Tensor:
    """Banded R2 in the block layout of :mod:`masra.model.banded`: h [B, L, D], mask [B, L] ->
    [B, nb, w, 3w], where slot s of row r in block n is the pair (n·w + r, (n - 1)·w + s).

    Zero outside the band and for pairs with a padded or out-of-range clip. Blocked matrix products
    only: O(L·w·D + L·w²) time, O(L·w + L·D) memory.
    """
    w = band
    unit = F.normalize(h, dim=-1)
    valid = mask.float()
    pairs = (query_blocks(valid, w).unsqueeze(-1) * key_blocks(valid, w).unsqueeze(-2) > 0) & block_band_mask(
        w, h.device
    )  # [B, nb, w, 3w]
    first = centre_rows(query_blocks(unit, w) @ key_blocks(unit, w).transpose(-1, -2), pairs)  # Ã [B, nb, w, 3w]
    # Rows j of key slot s = (m + 1)·w + r' are the rows r' of block n + m (m = -1, 0, 1), whose slot t'
    # is clip (n + m - 1)·w + t' = slot t' + m·w of block n: the products over the shared clips k are
    # [w, 2w] x [2w, w] (m = ±1) and [w, 3w] x [3w, w] (m = 0).
    around = F.pad(first, (0, 0, 0, 0, 1, 1))  # [B, nb + 2, w, 3w]: zero blocks before the first and after the last
    before, after = around[:, :-2], around[:, 2:]  # Ã of blocks n - 1 and n + 1, [B, nb, w, 3w]
    dot = torch.cat(
        [
            first[..., : 2 * w] @ before[..., w:].transpose(-1, -2),
            first @ first.transpose(-1, -2),
            first[..., w:] @ after[..., : 2 * w].transpose(-1, -2),
        ],
        dim=-1,
    )  # Σ_k Ã_ik Ã_jk [B, nb, w, 3w]; only k in both windows contributes
    # Norms over the overlap only: row i restricted to j's window and row j restricted to i's window.
    slot = torch.arange(3 * w, device=h.device)
    row = torch.arange(w, device=h.device).unsqueeze(1)
    in_window_j = ((slot.unsqueeze(1) - slot).abs() <= w).to(first.dtype)  # [3w (s), 3w (t)]: |j - k| <= w
    norm_i = first.square() @ in_window_j  # [B, nb, w, 3w] (in_window_j is symmetric)

    def in_window_i(m: int) -> Tensor:  # [w (r), 3w (t')]: clip k of slot t' of block n + m within w of row r
        return ((row + (1 - m) * w - slot).abs() <= w).to(first.dtype)

    norm_j = torch.cat(
        [in_window_i(m) @ rows.square().transpose(-1, -2) for m, rows in ((-1, before), (0, first), (1, after))], dim=-1
    )  # [B, nb, w, 3w]
    return dot / (norm_i * norm_j).clamp_min(1e-12).sqrt() * pairs.to(dot.dtype)


def second_order_relation(h: torch.Tensor, mask: torch.Tensor, band: int) -> torch.Tensor:
    """Banded R2: h [B, L, d], mask [B, L] -> [B, L, 2w+1] with out[b, i, o] = R2[b, i, i + o - w].

    Pairs with a padded or out-of-range clip are 0.
    """
    return blocks_to_band(second_order_blocks(h, mask, band), h.shape[1])


def biased_softmax(
    scores: torch.Tensor,
    bias: torch.Tensor,
    allowed: torch.Tensor,
    stats: dict[str, torch.Tensor] | None = None,
    rows: torch.Tensor | None = None,
    context: int = GLOBAL_TOKENS,
) -> torch.Tensor:
    """softmax(scores + bias) over the allowed keys; scores [B, H, R, K] with the ``context`` context keys
    first, bias and allowed broadcastable to it.

    With ``stats``, records over ``rows`` ([B, 1, R] bool, the clip rows the bias acts on):
    ``sora_attention_moved``, the share of the attention the bias moves (total-variation distance ½Σ|p - p₀|
    to the unbiased softmax); ``sora_attention_moved_clips``, the same between clips only (p and p₀ each
    renormalised over the clip keys, so a shift of mass to or from the context tokens does not count); and
    ``sora_bias_spread``, the spread (std over a row's clip keys) of the bias divided by that of the scores.
    """
    lowest = torch.finfo(scores.dtype).min
    probs = (scores + bias).masked_fill(~allowed, lowest).softmax(-1)
    if stats is not None and rows is not None:
        with torch.no_grad():
            stats.update(_bias_statistics(scores.float(), (scores + bias).float() - scores.float(), probs.float(),
                                          allowed, rows, context))
    return probs


def _bias_statistics(
    scores: Tensor, bias: Tensor, probs: Tensor, allowed: Tensor, rows: Tensor, context: int = GLOBAL_TOKENS
) -> Stats:
    """The diagnostics of :func:`biased_softmax` (see there); scores / bias / probs [B, H, R, K] float."""
    allowed = allowed.expand_as(scores)
    plain = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min).softmax(-1)
    clip_keys = allowed.clone()
    clip_keys[..., :context] = False
    clip_weight = clip_keys.float()

    def on_clips(p: Tensor) -> Tensor:
        p = p * clip_weight
        return p / p.sum(-1, keepdim=True).clamp_min(1e-12)

    def row_std(x: Tensor) -> Tensor:
        count = clip_weight.sum(-1).clamp_min(1.0)
        mean = (x * clip_weight).sum(-1) / count
        return (((x - mean.unsqueeze(-1)) * clip_weight).square().sum(-1) / count).sqrt()

    moved = 0.5 * (probs - plain).abs().sum(-1)  # [B, H, R]
    moved_clips = 0.5 * (on_clips(probs) - on_clips(plain)).abs().sum(-1)
    spread = row_std(bias) / row_std(scores).clamp_min(1e-12)
    rows = rows.expand_as(moved) & (clip_weight.sum(-1) > 1)

    def mean(x: Tensor) -> Tensor:
        return x[rows].mean() if rows.any() else x.sum() * 0

    return {"sora_attention_moved": mean(moved), "sora_attention_moved_clips": mean(moved_clips),
            "sora_bias_spread": mean(spread)}


class SORALayer(PartModule):
    """A post-norm layer whose self-attention is banded and biased by β·R2 (attention -> residual -> LN, then
    with ``feed_forward`` an encoder layer's FFN sub-layer).

    The sequence is [context tokens ; clips] (``context`` of them: QD-DETR's one global token by default,
    Moment-DETR's query tokens); the context tokens see everything. Its matrices are Xavier-initialised like
    every other transformer layer of the model.
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
        relation: str = "second_order",
        feed_forward: bool = False,
    ) -> None:
        super().__init__()
        check_choice(relation, RELATIONS, "model.sora.relation")
        if d_model % nheads:
            raise MasraError(f"hidden_dim {d_model} is not divisible by nheads {nheads}", field="model.nheads")
        if band < 1:
            raise MasraError(f"must be at least 1, got {band}", field="model.sora.band")
        self.nheads = nheads
        self.head_dim = d_model // nheads
        self.band = band
        self.relation = relation
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
        self.ffn = FeedForward(d_model, dim_feedforward, dropout, activation) if feed_forward else None
        for param in self.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)

    def attention(
        self, src: Tensor, mask: Tensor, pos: Tensor | None, relation_feats: Tensor | None = None,
        stats: Stats | None = None, context: int = GLOBAL_TOKENS,
    ) -> Tensor:
        """src [B, T, d] = [context ; clips], mask [B, T] float, pos [B, T, d] or None, relation_feats
        [B, L, D] (the features whose cosine is the first-order relation; default: the clips of src)
        -> [B, T, d]. ``stats`` (a dict, or None) receives the diagnostics of :func:`biased_softmax`.

        Both paths compute the same function. The banded one is O(L·w); on short videos, where the band
        covers most of the clips anyway, the dense one is faster (``masra bench sora`` measures both).
        """
        clips = src.shape[1] - context
        if torch.compiler.is_exporting():
            # An exported graph (masra export) serves every clip count, so it takes one path: the dense one (the
            # banded one's block count, ceil(L / w), does not export as a symbolic shape).
            return self.dense_attention(src, mask, pos, relation_feats, stats, context)
        path = self.dense_attention if clips <= DENSE_MAX_BAND_MULTIPLE * (2 * self.band + 1) else self.banded_attention
        return path(src, mask, pos, relation_feats, stats, context)

    def _project(self, src: torch.Tensor, pos: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """q, k, v as [B, T, H, dh] (positions on queries and keys only)."""
        batch, total, _ = src.shape
        qk_in = src if pos is None else src + pos
        shape = (batch, total, self.nheads, self.head_dim)
        return self.q_proj(qk_in).view(shape), self.k_proj(qk_in).view(shape), self.v_proj(src).view(shape)

    def dense_attention(
        self, src: Tensor, mask: Tensor, pos: Tensor | None, relation_feats: Tensor | None = None,
        stats: Stats | None = None, context: int = GLOBAL_TOKENS,
    ) -> Tensor:
        """The attention with full [T, T] score matrices, masked to the band: O(L²)."""
        batch, total, d = src.shape
        g, w, heads, dh = context, self.band, self.nheads, self.head_dim
        q, k, v = (x.transpose(1, 2) for x in self._project(src, pos))  # [B, H, T, dh]
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # [B, H, T, T]
        feats = src[:, g:] if relation_feats is None else relation_feats
        clip_valid = mask[:, g:]
        relation = dense_second_order(feats, clip_valid, w)  # [B, L, L]
        idx = torch.arange(total, device=src.device)
        clip_idx = idx[g:]
        valid_clips = clip_valid.bool()
        pairs = ((clip_idx[:, None] - clip_idx[None, :]).abs() <= w) & valid_clips.unsqueeze(1) & valid_clips.unsqueeze(2)
        relation = centre_rows(relation, pairs, self.relation)
        bias = F.pad(relation, (g, 0, g, 0))  # [B, T, T], zero on the global rows/columns
        bias = self.beta.view(1, heads, 1, 1).to(scores.dtype) * bias.unsqueeze(1).to(scores.dtype)
        allowed = ((idx[:, None] - idx[None, :]).abs() <= w) | (idx[:, None] < g) | (idx[None, :] < g)  # [T, T]
        allowed = (allowed.unsqueeze(0) & mask.bool().unsqueeze(1)).unsqueeze(1)  # [B, 1, T, T]
        clip_rows = (mask.bool() & (idx >= g)).unsqueeze(1)  # [B, 1, T]: the rows the bias acts on
        attn = biased_softmax(scores, bias, allowed, stats, clip_rows, g)
        out = (self.attn_dropout(attn) @ v).transpose(1, 2).reshape(batch, total, d)
        return self.out_proj(out)

    def banded_attention(
        self, src: Tensor, mask: Tensor, pos: Tensor | None, relation_feats: Tensor | None = None,
        stats: Stats | None = None, context: int = GLOBAL_TOKENS,
    ) -> Tensor:
        """The attention computed on the band only, in blocks: the w clips of a block attend to the global
        token(s) and to the 3w clips of the block and its two neighbours, masked to the exact band; the R2
        bias is a scalar per pair in the same layout. O(L·w) time and memory: no [L, 2w+1, d] window."""
        batch, total, d = src.shape
        g, heads, w, dh = context, self.nheads, self.band, self.head_dim
        clips = total - g
        q, k, v = (x.transpose(1, 2) for x in self._project(src, pos))  # [B, H, T, dh]
        valid = mask.bool()  # [B, T]
        clip_valid = mask[:, g:].float()  # [B, L]
        scale = 1.0 / math.sqrt(dh)

        # Clip rows, block by block (block-major: [nb, B·H, ...]): the w clips of block n attend to the global
        # token(s) and to blocks n - 1, n, n + 1 (key slots m·w + r', m = 0, 1, 2), masked to the exact band.
        def clip_halo_blocks(x: Tensor) -> Tensor:  # [B, H, T, dh] -> [nb + 2, B·H, w, dh]
            return halo_blocks(x[:, :, g:].reshape(batch * heads, clips, dh), w)

        k_halo, v_halo = clip_halo_blocks(k), clip_halo_blocks(v)
        nb = k_halo.shape[0] - 2
        q_blocks = clip_halo_blocks(q * scale)[1:-1]  # [nb, B·H, w, dh]
        k_global = k[:, :, :g].reshape(1, batch * heads, g, dh)
        logits = torch.cat(
            [q_blocks @ k_global.transpose(-1, -2)] + [q_blocks @ k_halo[m : m + nb].transpose(-1, -2) for m in range(3)],
            dim=-1,
        ).view(nb, batch, heads, w, g + 3 * w)  # [nb, B, H, w, G+3w]
        feats = src[:, g:] if relation_feats is None else relation_feats
        key_in_band = (key_blocks(clip_valid, w) > 0).unsqueeze(2) & block_band_mask(w, src.device)  # [B, nb, w, 3w]
        relation = second_order_blocks(feats, clip_valid, w)  # [B, nb, w, 3w]
        pairs = key_in_band & (query_blocks(clip_valid, w) > 0).unsqueeze(-1)  # [B, nb, w, 3w]
        relation = centre_rows(relation, pairs, self.relation).transpose(0, 1)  # [nb, B, w, 3w]
        bias = F.pad(relation, (g, 0)).unsqueeze(2) * self.beta.view(1, 1, heads, 1, 1).to(q.dtype)  # [nb, B, H, w, G+3w]
        allowed = torch.cat([valid[:, None, None, :g].expand(-1, nb, w, -1), key_in_band], dim=-1)  # [B, nb, w, G+3w]
        rows = (query_blocks(clip_valid, w) > 0).transpose(0, 1).unsqueeze(2)  # [nb, B, 1, w]: the rows the bias acts on
        attn = self.attn_dropout(biased_softmax(logits, bias, allowed.transpose(0, 1).unsqueeze(2), stats, rows, g))
        attn = attn.view(nb, batch * heads, w, g + 3 * w)
        v_global = v[:, :, :g].reshape(1, batch * heads, g, dh)
        clip_out = attn[..., :g] @ v_global  # [nb, B·H, w, dh]
        for m in range(3):
            clip_out = clip_out + attn[..., g + m * w : g + (m + 1) * w] @ v_halo[m : m + nb]
        clip_out = clip_out.view(nb, batch, heads, w, dh).permute(1, 2, 0, 3, 4).reshape(batch, heads, nb * w, dh)
        clip_out = clip_out[:, :, :clips]  # [B, H, L, dh]

        # Global rows: ordinary attention over every valid token.
        global_scores = q[:, :, :g] @ k.transpose(-1, -2) * scale  # [B, H, G, T]
        global_scores = global_scores.masked_fill(~valid[:, None, None, :], torch.finfo(global_scores.dtype).min)
        global_out = self.attn_dropout(global_scores.softmax(-1)) @ v  # [B, H, G, dh]

        out = torch.cat([global_out, clip_out], dim=2).transpose(1, 2).reshape(batch, total, d)
        return self.out_proj(out)

    def forward(
        self, src: Tensor, mask: Tensor, pos: Tensor | None = None, relation_feats: Tensor | None = None,
        stats: Stats | None = None, context: int = GLOBAL_TOKENS,
    ) -> Tensor:
        """src [B, T, d] ([context ; clips]), mask [B, T] float (1 = valid), pos [B, T, d] or None -> [B, T, d]."""
        src = self.norm(src + self.dropout(self.attention(src, mask, pos, relation_feats, stats, context)))
        return src if self.ffn is None else self.ffn(src)

    # ----- the part's hooks (masra.model.parts.base) -----------------------------------------------------
    def refine(
        self, sequence: Tensor, mask: Tensor, pos: Tensor, extras: Outputs, stats: Stats | None, context: int
    ) -> Tensor:
        """The relation features are LRCA's projection when LRCA is on (``lrca_video_proj``), else the clips."""
        return run_layer(self, sequence, mask, pos, extras.get("lrca_video_proj"), stats, context)

    def diagnostics(self) -> dict[str, Tensor]:
        return {f"sora_beta_h{h}": beta for h, beta in enumerate(self.beta)}


def build(cfg: SORAConfig, ctx: PartContext) -> SORALayer:
    return SORALayer(
        ctx.hidden_dim, ctx.nheads, ctx.dim_feedforward, ctx.dropout, cfg.band, cfg.beta_init, ctx.activation,
        learnable_beta=cfg.learnable_beta, relation=cfg.relation, feed_forward=cfg.feed_forward,
    )


PART = Part(name="sora", config=SORAConfig, build=build)
