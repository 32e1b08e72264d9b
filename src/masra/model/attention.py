"""Multi-head attention on ``F.scaled_dot_product_attention``, with ``nn.MultiheadAttention``'s parameters.

:class:`MultiheadAttention` keeps the parameter names, shapes and initialisation order of
``nn.MultiheadAttention`` (``in_proj_weight`` [3d, d], ``in_proj_bias`` [3d], ``out_proj``), so QD-DETR and
older masra checkpoints load unchanged, and it computes the same function (tests/model/test_attention.py).
What it adds:

- a boolean key-padding mask of shape [B, 1, 1, S]: without dropout, PyTorch's CPU flash kernel runs and
  never builds the [B, H, L, S] score matrix (the float [B, H, 1, S] mask nn.MultiheadAttention builds
  sends every call to the math kernel);
- with dropout on long inputs (the math kernel then builds the score matrix), queries are processed in
  chunks, so memory stays O(chunk · S) instead of O(L · S): on the CPU by
  :func:`masra.model.chunked_attention.chunked_dropout_attention` (the chunks reuse one set of score buffers,
  so no fresh pages are faulted in per chunk), elsewhere by SDPA under activation checkpointing;
- ``window``: local self-attention (clip i sees clips |i - j| <= w plus the global token at index 0, the
  global token sees everything), in O(L · w) time and memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from masra.model.banded import block_band_mask, block_count, key_blocks, query_blocks
from masra.model.chunked_attention import chunked_dropout_attention

# With dropout, the math kernel builds B·H·Lq·S scores (plus the dropout mask and the softmax kept for
# backward); above this many score entries the queries are processed in chunks (see attend).
MAX_SCORE_ELEMENTS = 2**25


def split_heads(x: torch.Tensor, nheads: int) -> torch.Tensor:
    """[B, L, H·dh] -> [B, H, L, dh]."""
    batch, length, width = x.shape
    return x.view(batch, length, nheads, width // nheads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, dh] -> [B, L, H·dh]."""
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attend_mask: torch.Tensor | None, dropout_p: float
) -> torch.Tensor:
    """SDPA on q [B, H, Lq, dh], k, v [B, H, S, dh], attend_mask bool broadcastable to [B, H, Lq, S]
    (True = attend); long inputs with dropout go through query chunks (same function, same dropout draws)."""
    batch, heads, n_query, _ = q.shape
    scores = batch * heads * n_query * k.shape[2]
    if dropout_p == 0.0 or scores <= MAX_SCORE_ELEMENTS:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attend_mask, dropout_p=dropout_p)
    chunk = max(1, MAX_SCORE_ELEMENTS // (batch * heads * k.shape[2]))
    if q.device.type == "cpu":
        return chunked_dropout_attention(q, k, v, attend_mask, dropout_p, chunk)
    outputs = []
    for start in range(0, n_query, chunk):
        rows = slice(start, start + chunk)
        mask = attend_mask if attend_mask is None or attend_mask.shape[-2] == 1 else attend_mask[..., rows, :]
        outputs.append(
            checkpoint(F.scaled_dot_product_attention, q[:, :, rows], k, v, mask, dropout_p, use_reentrant=False)
        )
    return torch.cat(outputs, dim=2)


def windowed_attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor, window: int, dropout_p: float
) -> torch.Tensor:
    """Local self-attention over [global token; clips]: q, k, v [B, H, 1+L, dh], valid [B, 1+L] bool.

    The global token (index 0) attends to every valid token; clip i attends to the global token and to the
    valid clips j with |i - j| <= window. Clips are cut into blocks of ``window``; a block's keys are the
    global token plus the clips of the block and its two neighbours (3·window), masked to the exact band:
    O(L · window) time and memory.
    """
    batch, heads, total, head_dim = q.shape
    length, w = total - 1, window
    out_global = attend(q[:, :, :1], k, v, valid[:, None, None, :], dropout_p)  # [B, H, 1, dh]
    blocks = block_count(length, w)

    def with_global_key(x: torch.Tensor) -> torch.Tensor:  # [B, H, 1+L, dh] -> [B·nb, H, 1+3w, dh]
        clip_keys = key_blocks(x[:, :, 1:].transpose(1, 2), w)  # [B, nb, 3w, H, dh]
        global_key = x[:, :, :1].transpose(1, 2).unsqueeze(1).expand(-1, blocks, -1, -1, -1)  # [B, nb, 1, H, dh]
        return torch.cat([global_key, clip_keys], dim=2).transpose(2, 3).reshape(batch * blocks, heads, 3 * w + 1, head_dim)

    q_blocks = query_blocks(q[:, :, 1:].transpose(1, 2), w)  # [B, nb, w, H, dh]
    # Key slot s of block b is clip (b - 1)·w + s; query r of the block is clip b·w + r (masra.model.banded).
    clip_valid = key_blocks(valid[:, 1:].float(), w) > 0  # [B, nb, 3w]
    mask = torch.cat(
        [valid[:, :1, None, None].expand(-1, blocks, w, 1), block_band_mask(w, q.device) & clip_valid[:, :, None, :]],
        dim=-1,
    )  # [B, nb, w, 1+3w]
    out_clips = attend(
        q_blocks.transpose(2, 3).reshape(batch * blocks, heads, w, head_dim),
        with_global_key(k),
        with_global_key(v),
        mask.reshape(batch * blocks, 1, w, 3 * w + 1),
        dropout_p,
    )  # [B·nb, H, w, dh]
    out_clips = out_clips.view(batch, blocks, heads, w, head_dim).transpose(1, 2).reshape(batch, heads, blocks * w, head_dim)
    return torch.cat([out_global, out_clips[:, :, :length]], dim=2)


class MultiheadAttention(nn.Module):
    """Batch-first multi-head attention with nn.MultiheadAttention's parameters and state-dict keys."""

    def __init__(self, d_model: int, nheads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.nheads = nheads
        self.dropout = dropout
        # Same registration and initialisation order as nn.MultiheadAttention (same RNG draws, same keys).
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def _project(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """In-projections, fused where inputs are shared (as nn.MultiheadAttention does)."""
        weight, bias = self.in_proj_weight, self.in_proj_bias
        d = weight.shape[1]
        if key is value:
            if query is key:
                return F.linear(query, weight, bias).chunk(3, dim=-1)
            return (F.linear(query, weight[:d], bias[:d]), *F.linear(key, weight[d:], bias[d:]).chunk(2, dim=-1))
        if query is key:
            q, k = F.linear(query, weight[: 2 * d], bias[: 2 * d]).chunk(2, dim=-1)
            return q, k, F.linear(value, weight[2 * d :], bias[2 * d :])
        return tuple(F.linear(x, w, b) for x, w, b in zip((query, key, value), weight.chunk(3), bias.chunk(3)))

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding: torch.Tensor | None = None,
        window: int = 0,
    ) -> torch.Tensor:
        """query [B, Lq, d], key / value [B, S, d], key_padding [B, S] bool (True = pad) -> [B, Lq, d].

        ``window`` > 0 (self-attention over [global token; clips] only): local attention, see
        :func:`windowed_attend`.
        """
        q, k, v = (split_heads(x, self.nheads) for x in self._project(query, key, value))  # [B, H, *, dh]
        dropout_p = self.dropout if self.training else 0.0
        if window > 0:
            valid = torch.ones(k.shape[0], k.shape[2], dtype=torch.bool, device=k.device)
            valid = valid if key_padding is None else ~key_padding
            out = windowed_attend(q, k, v, valid, window, dropout_p)
        else:
            mask = None if key_padding is None else ~key_padding[:, None, None, :]  # [B, 1, 1, S]
            out = attend(q, k, v, mask, dropout_p)
        return self.out_proj(merge_heads(out))
