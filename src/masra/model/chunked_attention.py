"""Attention with dropout over long inputs on the CPU, in query chunks that reuse one set of score buffers.

With dropout, the only CPU kernel of ``F.scaled_dot_product_attention`` is the math kernel: it builds the
[B, H, Lq, S] scores, their softmax, the dropout noise and the dropped probabilities as fresh tensors. At long
lengths each is a large block, which glibc's malloc maps fresh from the kernel and unmaps when freed, so every
chunk of every call faults in new zeroed pages: at 8 videos x 4,800 clips most of a training step was kernel
time (docs/benchmarks.md, "Kernel time at long lengths").

:func:`chunked_dropout_attention` computes the same function as the math kernel, with the same dropout draws
from the same random stream, one chunk of query rows at a time, writing every chunk's [B, H, rows, S] work
into a few buffers allocated once per call. Backward recomputes each chunk's scores and noise from q, k, v and
the saved random state (like activation checkpointing), so memory stays O(rows · S).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def chunked_dropout_attention(
    q: Tensor, k: Tensor, v: Tensor, attend_mask: Tensor | None, dropout_p: float, chunk_rows: int
) -> Tensor:
    """softmax(q kᵀ/√dh, masked) with dropout, times v: q [B, H, Lq, dh], k [B, H, S, dh], v [B, H, S, dv],
    attend_mask bool broadcastable to [B, H, Lq, S] (True = attend) -> [B, H, Lq, dv].

    The forward values and dropout masks are those of ``F.scaled_dot_product_attention(q, k, v, attend_mask,
    dropout_p)`` on CPU called on the same chunks (tests/model/test_chunked_attention.py); a row with no key
    to attend to gives 0, as there.
    """
    mask = None if attend_mask is None else attend_mask.expand(q.shape[0], 1, -1, -1)  # [B, 1, Lq | 1, S]
    return ChunkedDropoutAttention.apply(q, k, v, mask, dropout_p, chunk_rows)


class _Chunks:
    """The per-chunk work shared by forward and backward: scaled q and k, the mask, the score buffers."""

    def __init__(self, q: Tensor, k: Tensor, mask: Tensor | None, chunk_rows: int) -> None:
        # As the math kernel: both sides scaled by the square root of 1/√dh before the product.
        self.scale = math.sqrt(1.0 / math.sqrt(q.shape[-1]))
        self.query = q * self.scale  # [B, H, Lq, dh]
        self.key_t = k.transpose(-2, -1) * self.scale  # [B, H, dh, S]
        self.blocked = None if mask is None else ~mask  # [B, 1, Lq | 1, S]
        self.dead = None if mask is None else ~mask.any(-1, keepdim=True)  # [B, 1, Lq | 1, 1]: nothing to attend
        self.chunk_rows = chunk_rows
        self.flat = q.shape[0] * q.shape[1] * chunk_rows * k.shape[2]

    def buffer(self) -> Tensor:
        """One flat buffer a chunk's [B, H, rows, S] tensors are viewed into (contiguous for every row count)."""
        return self.query.new_empty(self.flat)

    def row_slices(self) -> list[slice]:
        rows = self.query.shape[2]
        return [slice(start, min(start + self.chunk_rows, rows)) for start in range(0, rows, self.chunk_rows)]

    def probabilities(self, rows: slice, scores_buffer: Tensor, probs_buffer: Tensor) -> Tensor:
        """softmax of the masked scores of query ``rows`` -> [B, H, rows, S], in probs_buffer (scores_buffer
        is overwritten)."""
        query = self.query[:, :, rows]
        shape = (*query.shape[:-1], self.key_t.shape[-1])
        scores = torch.matmul(query, self.key_t, out=_view(scores_buffer, shape))
        if self.blocked is not None:
            scores.masked_fill_(_rows_of(self.blocked, rows), float("-inf"))
        probs = torch._softmax(scores, -1, False, out=_view(probs_buffer, shape))
        if self.dead is not None:
            probs.masked_fill_(_rows_of(self.dead, rows), 0.0)
        return probs


def _view(buffer: Tensor, shape: tuple[int, ...]) -> Tensor:
    return buffer[: math.prod(shape)].view(shape)


def _rows_of(mask: Tensor, rows: slice) -> Tensor:
    """mask [B, 1, Lq | 1, *] restricted to query rows (a one-row mask broadcasts to every row)."""
    return mask if mask.shape[2] == 1 else mask[:, :, rows]


def _draw_noise(buffer: Tensor, shape: tuple[int, ...], dropout_p: float, generator: torch.Generator | None) -> Tensor:
    """The dropout noise the math kernel draws: Bernoulli(1 - p) / (1 - p)."""
    noise = _view(buffer, shape).bernoulli_(1.0 - dropout_p, generator=generator)
    return noise.div_(1.0 - dropout_p)


class ChunkedDropoutAttention(torch.autograd.Function):
    """See :func:`chunked_dropout_attention`; the mask is [B, 1, Lq | 1, S] bool or None."""

    @staticmethod
    def forward(ctx, q, k, v, mask, dropout_p, chunk_rows):  # type: ignore[override]
        ctx.rng_state = torch.get_rng_state()  # the noise is redrawn from here in backward
        ctx.dropout_p, ctx.chunk_rows = dropout_p, chunk_rows
        ctx.save_for_backward(q, k, v, mask)
        chunks = _Chunks(q, k, mask, chunk_rows)
        scores_buffer, probs_buffer, noise_buffer = chunks.buffer(), chunks.buffer(), chunks.buffer()
        outputs = []
        for rows in chunks.row_slices():
            probs = chunks.probabilities(rows, scores_buffer, probs_buffer)  # [B, H, rows, S]
            noise = _draw_noise(noise_buffer, tuple(probs.shape), dropout_p, None)
            dropped = torch.mul(probs, noise, out=_view(scores_buffer, tuple(probs.shape)))
            outputs.append(torch.matmul(dropped, v))  # [B, H, rows, dv]
        return torch.cat(outputs, dim=2)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, v, mask = ctx.saved_tensors
        generator = torch.Generator()
        generator.set_state(ctx.rng_state)
        chunks = _Chunks(q, k, mask, ctx.chunk_rows)
        scores_buffer, probs_buffer, noise_buffer, grad_buffer = (chunks.buffer() for _ in range(4))
        batch, heads, _, head_dim = q.shape
        length = k.shape[2]
        grad_query = torch.empty_like(chunks.query)  # [B, H, Lq, dh]
        grad_key_t = k.new_zeros(batch * heads, head_dim, length)  # [B·H, dh, S]
        grad_v = v.new_zeros(batch * heads, length, v.shape[-1])  # [B·H, S, dv]
        for rows in chunks.row_slices():
            probs = chunks.probabilities(rows, scores_buffer, probs_buffer)  # [B, H, n, S]
            shape = tuple(probs.shape)
            n = shape[2]
            noise = _draw_noise(noise_buffer, shape, ctx.dropout_p, generator)
            dropped = torch.mul(probs, noise, out=_view(scores_buffer, shape))
            grad_rows = grad_out[:, :, rows]  # [B, H, n, dv]
            grad_v.baddbmm_(dropped.view(batch * heads, n, length).transpose(1, 2),
                            grad_rows.reshape(batch * heads, n, -1))
            grad_probs = torch.matmul(grad_rows, v.transpose(-2, -1), out=_view(grad_buffer, shape)).mul_(noise)
            grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype,
                                                       grad_input=_view(scores_buffer, shape))
            grad_query[:, :, rows] = torch.matmul(grad_scores, chunks.key_t.transpose(-2, -1))
            grad_key_t.baddbmm_(chunks.query[:, :, rows].reshape(batch * heads, n, head_dim).transpose(1, 2),
                                grad_scores.view(batch * heads, n, length))
        grad_k = grad_key_t.view(batch, heads, head_dim, length).transpose(-2, -1) * chunks.scale
        return grad_query * chunks.scale, grad_k, grad_v.view(v.shape), None, None, None
