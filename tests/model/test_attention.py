"""masra's SDPA attention computes nn.MultiheadAttention's function with its parameters (QD-DETR weights load)."""

import pytest
import torch
from torch import nn

import masra.model.attention as attention
from masra.model.attention import MultiheadAttention, attend, split_heads

D, HEADS = 32, 4


def _pair(seed: int = 0, dropout: float = 0.0) -> tuple[nn.MultiheadAttention, MultiheadAttention]:
    torch.manual_seed(seed)
    reference = nn.MultiheadAttention(D, HEADS, dropout=dropout, batch_first=True)
    torch.manual_seed(seed)
    ours = MultiheadAttention(D, HEADS, dropout=dropout)
    return reference, ours


def _inputs(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    batch, length = len(lengths), max(lengths)
    x = torch.randn(batch, length, D, generator=gen)
    pos = torch.randn(batch, length, D, generator=gen)
    padding = torch.arange(length)[None, :] >= torch.tensor(lengths)[:, None]  # [B, L], True = pad
    return x, pos, padding


def test_same_parameters_keys_and_initialisation_as_nn_multihead_attention():
    reference, ours = _pair()
    ref_state, our_state = reference.state_dict(), ours.state_dict()
    assert list(ref_state) == list(our_state)
    assert all(torch.equal(ref_state[key], our_state[key]) for key in ref_state)


@pytest.mark.parametrize("shared", ["qk", "kv", "none"])
def test_same_outputs_as_nn_multihead_attention_with_padding(shared):
    reference, ours = _pair()
    reference.eval(), ours.eval()
    x, pos, padding = _inputs([9, 5, 7])
    qk = x + pos
    query, key, value = {"qk": (qk, qk, x), "kv": (qk, x, x), "none": (qk, pos, x)}[shared]
    expected, _ = reference(query, key, value, key_padding_mask=padding, need_weights=False)
    assert torch.allclose(ours(query, key, value, padding), expected, atol=1e-6)


def test_training_dropout_draws_the_same_masks_as_nn_multihead_attention():
    reference, ours = _pair(dropout=0.3)
    x, pos, padding = _inputs([9, 5, 7])
    qk = x + pos
    torch.manual_seed(5)
    expected, _ = reference.train()(qk, qk, x, key_padding_mask=padding, need_weights=False)
    torch.manual_seed(5)
    assert torch.allclose(ours.train()(qk, qk, x, padding), expected, atol=1e-6)


def test_long_inputs_with_dropout_are_chunked_and_compute_the_same_function(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, HEADS, 40, 8, generator=gen, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 1, 40, dtype=torch.bool)
    mask[1, ..., 30:] = False
    # A dropout probability of 1e-9 keeps every entry, so chunked and unchunked must agree.
    whole = attend(q, k, v, mask, 1e-9)
    grads = torch.autograd.grad(whole.sum(), (q, k, v))
    monkeypatch.setattr(attention, "MAX_SCORE_ELEMENTS", 2 * HEADS * 7 * 40)  # 7 query rows per chunk
    chunk_rows = []
    real = attention.chunked_dropout_attention
    monkeypatch.setattr(attention, "chunked_dropout_attention",
                        lambda *a: chunk_rows.append(a[-1]) or real(*a))
    chunked = attend(q, k, v, mask, 1e-9)
    chunked_grads = torch.autograd.grad(chunked.sum(), (q, k, v))
    assert chunk_rows == [7]  # 40 rows in chunks of 7
    assert torch.allclose(chunked, whole, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(chunked_grads, grads))


def _dense_band_reference(ours: MultiheadAttention, x, pos, padding, window):
    """Local attention written with a full [B, 1, S, S] mask (what windowed_attend must equal)."""
    qk = x + pos
    weight, bias = ours.in_proj_weight, ours.in_proj_bias
    q, k, v = (split_heads(t, HEADS) for t in (torch.nn.functional.linear(inp, w, b) for inp, w, b in
                                              zip((qk, qk, x), weight.chunk(3), bias.chunk(3))))
    length = x.shape[1]
    idx = torch.arange(length)
    band = (idx[:, None] - idx[None, :]).abs() <= window
    band[0, :] = True  # the global token sees everything
    band[:, 0] = True  # everything sees the global token
    mask = band[None, None] & ~padding[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return ours.out_proj(out.transpose(1, 2).reshape(x.shape))


@pytest.mark.parametrize("window", [1, 2, 3, 50])
def test_windowed_attention_equals_the_band_masked_dense_attention(window):
    _, ours = _pair()
    ours.eval()
    x, pos, padding = _inputs([12, 8, 10])  # index 0 plays the global token
    qk = x + pos
    expected = _dense_band_reference(ours, x, pos, padding, window)
    got = ours(qk, qk, x, padding, window=window)
    valid = ~padding
    assert torch.allclose(got[valid], expected[valid], atol=1e-5)


def test_a_window_covering_the_video_is_full_attention():
    _, ours = _pair()
    ours.eval()
    x, pos, padding = _inputs([12, 8, 10])
    qk = x + pos
    valid = ~padding
    assert torch.allclose(ours(qk, qk, x, padding, window=12)[valid], ours(qk, qk, x, padding)[valid], atol=1e-5)
