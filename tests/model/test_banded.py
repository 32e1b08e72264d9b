"""Banded helpers: the block layout against dense [L, L] matrices, and O(L·w) memory of the banded parts
(SORA's attention and second-order relation, LRCA's cosines) measured from the profiler's allocations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from masra.lab.bench.measure import peak_memory_bytes
from masra.model.banded import band_dot, band_to_blocks, band_windows, blocks_to_band
from masra.model.parts.lrca import banded_cosine
from masra.model.parts.sora import SORALayer, dense_second_order, second_order_relation

FLOAT = 4  # bytes


def dense_band(full: torch.Tensor, band: int) -> torch.Tensor:
    """[B, L, L] -> [B, L, 2w+1] with out[b, i, o] = full[b, i, i + o - w] (0 outside), by padding columns."""
    length = full.shape[1]
    padded = F.pad(full, (band, band))  # column j sits at j + w
    rows = torch.arange(length).view(-1, 1)
    cols = rows + torch.arange(2 * band + 1).view(1, -1)  # (i + o - w) + w
    return padded[:, rows, cols]


@pytest.mark.parametrize(("length", "band"), [(1, 1), (7, 3), (12, 4), (13, 4), (5, 9), (40, 2)])
def test_band_dot_equals_the_band_of_the_full_product(length: int, band: int) -> None:
    gen = torch.Generator().manual_seed(length + band)
    x, y = torch.randn(2, 2, length, 6, generator=gen)
    torch.testing.assert_close(band_dot(x, y, band), dense_band(x @ y.transpose(1, 2), band))


@pytest.mark.parametrize(("length", "band"), [(9, 2), (8, 4), (3, 5)])
def test_blocks_and_band_layouts_are_inverse(length: int, band: int) -> None:
    values = torch.randn(2, length, 2 * band + 1, generator=torch.Generator().manual_seed(1))
    values = values * band_windows(torch.ones(2, length, 1), band).squeeze(-1)  # 0 outside the sequence
    blocks = band_to_blocks(values, band)
    assert blocks.shape == (2, -(-length // band), band, 3 * band)
    torch.testing.assert_close(blocks_to_band(blocks, length), values)
    assert blocks.count_nonzero() == values.count_nonzero()  # nothing lands outside the band


def test_blocked_second_order_equals_the_dense_one_across_block_edges_and_holes() -> None:
    band, length = 4, 45  # 12 blocks, the last one partly padding
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(2, length, 7, generator=gen)
    mask = torch.ones(2, length)
    mask[0, [3, 4, 20]] = 0  # holes
    mask[1, 31:] = 0  # end padding
    want = dense_band(dense_second_order(h, mask, band), band)
    torch.testing.assert_close(second_order_relation(h, mask, band), want, atol=1e-5, rtol=1e-5)


def test_banded_attention_and_its_gradients_equal_the_dense_path_on_a_long_padded_input() -> None:
    torch.manual_seed(0)
    layer = SORALayer(16, 4, 32, dropout=0.0, band=3, beta_init=1.5)
    gen = torch.Generator().manual_seed(4)
    src = torch.randn(2, 1 + 40, 16, generator=gen, requires_grad=True)
    pos = torch.randn(2, 1 + 40, 16, generator=gen)
    feats = torch.randn(2, 40, 5, generator=gen, requires_grad=True)
    mask = torch.ones(2, 1 + 40)
    mask[1, 1 + 29 :] = 0
    mask[0, [5, 6]] = 0
    valid = mask.bool()
    outputs, grads = [], []
    for path in (layer.banded_attention, layer.dense_attention):
        layer.zero_grad()
        out = path(src, mask, pos, feats)
        (out[valid] ** 2).sum().backward()
        outputs.append(out[valid])
        grads.append([src.grad.clone(), feats.grad.clone(), *(p.grad.clone() for p in layer.parameters() if p.grad is not None)])
        src.grad, feats.grad = None, None
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-4)
    assert len(grads[0]) == len(grads[1])
    for banded, dense in zip(*grads):
        torch.testing.assert_close(banded, dense, atol=1e-4, rtol=1e-3)


# Memory: one [B, L, 2w+1, D] window of feature vectors is the tensor the blocked code never builds;
# each peak (forward and backward, live bytes from the profiler) must stay below the size of one.
BATCH, LENGTH, BAND = 2, 300, 16


def window_bytes(width: int) -> int:
    return BATCH * LENGTH * (2 * BAND + 1) * width * FLOAT


def forward_backward_peak(fn, *inputs: torch.Tensor) -> int:
    def run() -> None:
        leaves = [x.detach().requires_grad_() for x in inputs]
        fn(*leaves).square().sum().backward()

    return peak_memory_bytes(run, torch.device("cpu"))


def test_sora_banded_attention_memory_stays_below_one_key_window() -> None:
    d = 256  # the model's width and heads: the windowed form held 4 windows, the blocked one holds < 1
    torch.manual_seed(0)
    layer = SORALayer(d, 8, 2 * d, dropout=0.0, band=BAND)
    src, pos = torch.randn(2, BATCH, 1 + LENGTH, d)
    mask = torch.ones(BATCH, 1 + LENGTH)
    peak = forward_backward_peak(lambda s: layer.banded_attention(s, mask, pos), src)
    assert peak < window_bytes(d), (peak, window_bytes(d))


def test_second_order_relation_memory_stays_below_one_window_of_neighbour_rows() -> None:
    h = torch.randn(BATCH, LENGTH, 32)
    mask = torch.ones(BATCH, LENGTH)
    peak = forward_backward_peak(lambda x: second_order_relation(x, mask, BAND), h)
    neighbour_rows = window_bytes(4 * BAND + 1)  # the [B, L, 2w+1, 4w+1] tensor the windowed form built
    assert peak < neighbour_rows / 2, (peak, neighbour_rows)  # the windowed form: 2.6 times it


def test_banded_cosine_memory_stays_below_one_caption_window() -> None:
    captions = torch.randn(BATCH, LENGTH, 384)
    peak = forward_backward_peak(lambda x: banded_cosine(x, BAND), captions)
    assert peak < window_bytes(384) / 3, (peak, window_bytes(384))  # the windowed form: 1.07 times it
