"""Chunked attention with dropout: SDPA's function and dropout draws, one set of score buffers per call."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.checkpoint import checkpoint

import masra.model.attention as attention
from masra.model.chunked_attention import chunked_dropout_attention

B, H, L, DH, ROWS = 3, 4, 50, 8, 7


def _qkv(dtype: torch.dtype = torch.float32, head_dim: int = DH) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    # q laid out as split_heads leaves it ([B, L, H, dh] memory), k and v contiguous.
    q = torch.randn(B, L, H, head_dim, generator=gen, dtype=dtype).transpose(1, 2).requires_grad_()
    k, v = (torch.randn(B, H, L, head_dim, generator=gen, dtype=dtype, requires_grad=True) for _ in range(2))
    return q, k, v


def _masks() -> dict[str, torch.Tensor | None]:
    padding = torch.ones(B, 1, 1, L, dtype=torch.bool)
    padding[1, ..., 30:] = False
    full = torch.rand(B, 1, L, L, generator=torch.Generator().manual_seed(1)) > 0.3
    full[0, 0, 3] = False  # a query row with nothing to attend to
    return {"key_padding": padding, "per_row": full, "none": None}


def _sdpa_chunks(q, k, v, mask, dropout_p):
    """What attend() computed before: SDPA on the same query chunks, each under checkpointing."""
    outputs = []
    for start in range(0, q.shape[2], ROWS):
        rows = slice(start, start + ROWS)
        chunk_mask = mask if mask is None or mask.shape[-2] == 1 else mask[:, :, rows]
        outputs.append(checkpoint(F.scaled_dot_product_attention, q[:, :, rows], k, v, chunk_mask, dropout_p,
                                  use_reentrant=False))
    return torch.cat(outputs, dim=2)


@pytest.mark.parametrize("mask_kind", ["key_padding", "per_row", "none"])
def test_same_values_and_dropout_draws_as_sdpa_on_the_same_chunks(mask_kind):
    q, k, v = _qkv()
    mask = _masks()[mask_kind]
    torch.manual_seed(7)
    expected = _sdpa_chunks(q, k, v, mask, 0.3)
    expected_grads = torch.autograd.grad((expected * expected).sum(), (q, k, v))
    next_draw = torch.rand(1)
    torch.manual_seed(7)
    got = chunked_dropout_attention(q, k, v, mask, 0.3, ROWS)
    grads = torch.autograd.grad((got * got).sum(), (q, k, v))
    assert torch.equal(got, expected)  # same products, same softmax, same noise: bit for bit
    assert torch.equal(torch.rand(1), next_draw)  # the random stream moves on exactly as before
    assert not got.isnan().any()  # the row with no key gives 0, not NaN
    # Gradients sum the chunks' contributions to k and v in another order: equal to float rounding.
    for ours, reference in zip(grads, expected_grads):
        assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-5)


def test_gradients_are_exact_in_double_precision():
    q, k, v = (t.detach()[:1, :2, :12].double().requires_grad_() for t in _qkv())
    mask = _masks()["per_row"][:1, :, :12, :12]

    def seeded(q, k, v):  # the same dropout draws on every call gradcheck makes
        torch.manual_seed(3)
        return chunked_dropout_attention(q, k, v, mask, 0.3, 5)  # 3 chunks, the last short

    assert torch.autograd.gradcheck(seeded, (q, k, v))


class _FreshChunkAllocations(TorchDispatchMode):
    """Counts op outputs in new memory (sharing no input's storage) of at least a chunk's score size."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.count = numel, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in (*args, *(kwargs or {}).values()) if isinstance(t, torch.Tensor)]
        used = {t.untyped_storage().data_ptr() for t in inputs}
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.numel() >= self.numel:
                self.count += tensor.untyped_storage().data_ptr() not in used
        return out


def test_the_chunks_reuse_a_fixed_set_of_score_buffers():
    q, k, v = _qkv(head_dim=2)  # q, k, v smaller than a chunk's scores: only score-sized memory counts
    mask = _masks()["key_padding"]
    chunk_scores = B * H * ROWS * L
    with _FreshChunkAllocations(chunk_scores) as ours:
        out = chunked_dropout_attention(q, k, v, mask, 0.3, ROWS)
        torch.autograd.grad(out.sum(), (q, k, v))
    with _FreshChunkAllocations(chunk_scores) as sdpa:
        out = _sdpa_chunks(q, k, v, mask, 0.3)
        torch.autograd.grad(out.sum(), (q, k, v))
    # 8 chunks of 7 rows: 3 buffers in forward and 4 in backward, however many chunks; SDPA allocates new
    # scores, softmax, noise and dropped probabilities for every full chunk, again when recomputing them and
    # in backward.
    assert ours.count == 7
    assert sdpa.count > 3 * 7


def test_attend_routes_long_cpu_inputs_with_dropout_here(monkeypatch):
    q, k, v = _qkv()
    mask = _masks()["key_padding"]
    monkeypatch.setattr(attention, "MAX_SCORE_ELEMENTS", B * H * ROWS * L)
    torch.manual_seed(7)
    routed = attention.attend(q, k, v, mask, 0.3)
    torch.manual_seed(7)
    assert torch.equal(routed, chunked_dropout_attention(q, k, v, mask, 0.3, ROWS))


def test_bf16_inputs_stay_bf16_and_close_to_sdpa():
    q, k, v = _qkv(torch.bfloat16)
    mask = _masks()["key_padding"]
    torch.manual_seed(7)
    expected = _sdpa_chunks(q, k, v, mask, 0.3)
    torch.manual_seed(7)
    got = chunked_dropout_attention(q, k, v, mask, 0.3, ROWS)
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected.float(), atol=0.05, rtol=0.05)
