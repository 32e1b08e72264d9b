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
    """The per-chunk work shared by forward and backward: scaled q and k and v as [B·H, *, *] contiguous
    matrices (made once per call, so no product copies an operand per chunk), the mask, the score buffers."""

    def __init__(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, chunk_rows: int) -> None:
        batch, heads, rows, head_dim = q.shape
        length = k.shape[2]
        self.shape = (batch, heads, length)
        # As the math kernel: both sides scaled by the square root of 1/√dh before the product.
        self.scale = math.sqrt(1.0 / math.sqrt(head_dim))
        # The operands in the layouts the math kernel gets: matmul copies them to contiguous memory for every
        # chunk of several rows (made once here instead), but takes a one-row chunk's as they are (kept
        # for those, so that every row's values stay the math kernel's).
        self.given = (q * self.scale, k.transpose(-2, -1) * self.scale, v)  # [B, H, Lq, dh], [B, H, dh, S], v
        self.query = self.given[0].contiguous().view(batch * heads, rows, head_dim)  # [B·H, Lq, dh]
        self.key_t = self.given[1].contiguous().view(batch * heads, head_dim, length)  # [B·H, dh, S]
        self.value = v.contiguous().view(batch * heads, length, v.shape[-1])  # [B·H, S, dv]
        self.blocked = None if mask is None else ~mask  # [B, 1, Lq | 1, S]
        self.dead = None if mask is None else ~mask.any(-1, keepdim=True)  # [B, 1, Lq | 1, 1]: nothing to attend
        self.chunk_rows = chunk_rows
        self.flat = batch * heads * chunk_rows * length

    def buffer(self) -> Tensor:
        """One flat buffer a chunk's [B, H, rows, S] tensors are viewed into (contiguous for every row count)."""
        return self.query.new_empty(self.flat)

    def row_slices(self) -> list[slice]:
        rows = self.query.shape[1]
        return [slice(start, min(start + self.chunk_rows, rows)) for start in range(0, rows, self.chunk_rows)]

    def view(self, buffer: Tensor, rows: slice) -> Tensor:
        """The first [B, H, rows, S] of a flat buffer."""
        batch, heads, length = self.shape
        n = rows.stop - rows.start
        return buffer[: batch * heads * n * length].view(batch, heads, n, length)

    def operands(self, rows: slice) -> tuple[Tensor, Tensor, Tensor]:
        """(scaled q [B, H, Lq, dh], scaled kᵀ [B, H, dh, S], v [B, H, S, dv]) for a chunk of ``rows``."""
        if rows.stop - rows.start == 1:
            return self.given
        batch, heads, length = self.shape
        return (self.query.view(batch, heads, -1, self.query.shape[-1]), self.key_t.view(batch, heads, -1, length),
                self.value.view(batch, heads, length, -1))

    def probabilities(self, rows: slice, scores_buffer: Tensor, probs_buffer: Tensor) -> Tensor:
        """softmax of the masked scores of query ``rows`` -> [B, H, rows, S], in probs_buffer (scores_buffer
        is overwritten)."""
        scores = self.view(scores_buffer, rows)
        query, key_t, _ = self.operands(rows)
        torch.matmul(query[:, :, rows], key_t, out=scores)
        if self.blocked is not None:
            scores.masked_fill_(_rows_of(self.blocked, rows), float("-inf"))
        probs = torch._softmax(scores, -1, False, out=self.view(probs_buffer, rows))
        if self.dead is not None:
            probs.masked_fill_(_rows_of(self.dead, rows), 0.0)
        return probs


def _matrices(x: Tensor) -> Tensor:
    """[B, H, n, m] -> [B·H, n, m] (a view)."""
    return x.view(-1, *x.shape[2:])


def _rows_of(mask: Tensor, rows: slice) -> Tensor:
    """mask [B, 1, Lq | 1, *] restricted to query rows (a one-row mask broadcasts to every row)."""
    return mask if mask.shape[2] == 1 else mask[:, :, rows]


def _draw_noise(noise: Tensor, dropout_p: float, generator: torch.Generator | None) -> Tensor:
    """The dropout noise the math kernel draws, in place: Bernoulli(1 - p) / (1 - p)."""
    return noise.bernoulli_(1.0 - dropout_p, generator=generator).div_(1.0 - dropout_p)


class ChunkedDropoutAttention(torch.autograd.Function):
    """See :func:`chunked_dropout_attention`; the mask is [B, 1, Lq | 1, S] bool or None."""

    @staticmethod
    def forward(ctx, q, k, v, mask, dropout_p, chunk_rows):  # type: ignore[override]
        ctx.rng_state = torch.get_rng_state()  # the noise is redrawn from here in backward
        ctx.dropout_p, ctx.chunk_rows = dropout_p, chunk_rows
        ctx.save_for_backward(q, k, v, mask)
        chunks = _Chunks(q, k, v, mask, chunk_rows)
        scores_buffer, probs_buffer, noise_buffer = chunks.buffer(), chunks.buffer(), chunks.buffer()
        outputs = []
        for rows in chunks.row_slices():
            probs = chunks.probabilities(rows, scores_buffer, probs_buffer)  # [B, H, n, S]
            noise = _draw_noise(chunks.view(noise_buffer, rows), dropout_p, None)
            dropped = torch.mul(probs, noise, out=chunks.view(scores_buffer, rows))
            outputs.append(torch.matmul(dropped, chunks.operands(rows)[2]))  # [B, H, n, dv]
        return torch.cat(outputs, dim=2)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, v, mask = ctx.saved_tensors
        generator = torch.Generator()
        generator.set_state(ctx.rng_state)
        chunks = _Chunks(q, k, v, mask, ctx.chunk_rows)
        scores_buffer, probs_buffer, noise_buffer, grad_buffer = (chunks.buffer() for _ in range(4))
        grad_out = _matrices(grad_out.contiguous())  # [B·H, Lq, dv]
        grad_query = torch.empty_like(chunks.query)  # [B·H, Lq, dh]
        grad_key_t = torch.zeros_like(chunks.key_t)  # [B·H, dh, S]
        grad_value = torch.zeros_like(chunks.value)  # [B·H, S, dv]
        for rows in chunks.row_slices():
            probs = chunks.probabilities(rows, scores_buffer, probs_buffer)  # [B, H, n, S]
            noise = _draw_noise(chunks.view(noise_buffer, rows), ctx.dropout_p, generator)
            dropped = torch.mul(probs, noise, out=chunks.view(scores_buffer, rows))
            grad_value.baddbmm_(_matrices(dropped).transpose(1, 2), grad_out[:, rows])
            grad_probs = chunks.view(grad_buffer, rows)
            torch.bmm(grad_out[:, rows], chunks.value.transpose(1, 2), out=_matrices(grad_probs))
            grad_probs.mul_(noise)
            grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype, grad_input=dropped)
            torch.bmm(_matrices(grad_scores), chunks.key_t.transpose(1, 2), out=grad_query[:, rows])
            grad_key_t.baddbmm_(chunks.query[:, rows].transpose(1, 2), _matrices(grad_scores))
        batch, heads, length = chunks.shape
        grad_q = (grad_query * chunks.scale).view(q.shape)
        grad_k = (grad_key_t * chunks.scale).view(batch, heads, -1, length).transpose(-2, -1)
        return grad_q, grad_k, grad_value.view(v.shape), None, None, None
