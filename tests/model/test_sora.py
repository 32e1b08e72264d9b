"""SORA: banded second-order relation and banded attention against dense O(L²) references."""

from __future__ import annotations


import pytest
import torch

from masra.errors import MasraError
from masra.model.sora import DENSE_MAX_BAND_MULTIPLE, SORALayer, dense_second_order, second_order_relation

D, HEADS = 16, 4


def dense_to_band(full: torch.Tensor, band: int) -> torch.Tensor:
    """[B, L, L] -> [B, L, 2w+1] with out[b, i, o] = full[b, i, i + o - w] (0 outside)."""
    batch, length, _ = full.shape
    out = torch.zeros(batch, length, 2 * band + 1, dtype=full.dtype)
    for i in range(length):
        for o in range(2 * band + 1):
            j = i + o - band
            if 0 <= j < length:
                out[:, i, o] = full[:, i, j]
    return out


def make_inputs(batch: int = 2, length: int = 12, pad_from: int = 9, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randn(batch, length + 1, D, generator=gen)
    pos = torch.randn(batch, length + 1, D, generator=gen)
    mask = torch.ones(batch, length + 1)
    mask[-1, 1 + pad_from :] = 0
    return src, pos, mask


def make_layer(band: int = 2, beta: float = 1.5) -> SORALayer:
    torch.manual_seed(0)
    layer = SORALayer(D, HEADS, 32, dropout=0.0, band=band, beta_init=beta)
    return layer.eval()


@pytest.mark.parametrize("band", [1, 2, 5, 20])
def test_banded_second_order_equals_dense_reference(band: int) -> None:
    src, _, mask = make_inputs()
    h, m = src[:, 1:], mask[:, 1:]
    banded = second_order_relation(h, m, band)
    assert banded.shape == (2, 12, 2 * band + 1)
    torch.testing.assert_close(banded, dense_to_band(dense_second_order(h, m, band), band), atol=1e-5, rtol=1e-5)


def test_second_order_relation_is_one_on_the_diagonal_and_bounded() -> None:
    src, _, mask = make_inputs()
    rel = second_order_relation(src[:, 1:], mask[:, 1:], 3)
    valid = mask[:, 1:].bool()
    torch.testing.assert_close(rel[:, :, 3][valid], torch.ones(int(valid.sum())))
    assert rel.abs().max() <= 1.0 + 1e-5
    assert (rel[1, 9:] == 0).all()  # padded rows


@pytest.mark.parametrize("band", [1, 3])
def test_banded_attention_equals_dense_reference(band: int) -> None:
    layer = make_layer(band)
    src, pos, mask = make_inputs()
    banded = layer.banded_attention(src, mask, pos)
    dense = layer.dense_attention(src, mask, pos)
    valid = mask.bool()
    torch.testing.assert_close(banded[valid], dense[valid], atol=1e-5, rtol=1e-4)


def test_output_shape_and_padding_does_not_change_valid_outputs() -> None:
    layer = make_layer(band=2)
    src, pos, mask = make_inputs(batch=1, length=8, pad_from=8)
    out = layer(src, mask, pos)
    assert out.shape == src.shape
    gen = torch.Generator().manual_seed(5)
    padded_src = torch.cat([src, 100 * torch.randn(1, 4, D, generator=gen)], dim=1)
    padded_pos = torch.cat([pos, torch.randn(1, 4, D, generator=gen)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 4)], dim=1)
    padded_out = layer(padded_src, padded_mask, padded_pos)
    assert torch.isfinite(padded_out).all()
    torch.testing.assert_close(padded_out[:, :9], out, atol=1e-5, rtol=1e-5)


def test_clips_beyond_twice_the_band_never_influence_a_clip() -> None:
    band = 2
    layer = make_layer(band)
    src, pos, mask = make_inputs(batch=1, length=14, pad_from=14)
    out = layer(src, mask, pos)
    far = 1 + 12  # clip 12, more than 2w = 4 clips away from clips 0..7
    changed = src.clone()
    changed[:, far] += 10.0
    out_changed = layer(changed, mask, pos)
    torch.testing.assert_close(out_changed[:, 1 : 1 + 8], out[:, 1 : 1 + 8])
    assert not torch.allclose(out_changed[:, 1 + 10], out[:, 1 + 10])  # a clip inside the band does change
    assert not torch.allclose(out_changed[:, 0], out[:, 0])  # the global token sees every clip


def test_relation_bias_changes_the_attention_and_beta_gets_gradient() -> None:
    layer = make_layer(band=2, beta=0.0)
    src, pos, mask = make_inputs()
    unbiased = layer(src, mask, pos)
    with torch.no_grad():
        layer.beta.fill_(3.0)
    biased = layer(src, mask, pos)
    assert not torch.allclose(biased, unbiased)
    biased.sum().backward()
    assert layer.beta.grad is not None and layer.beta.grad.abs().sum() > 0
    assert all(p.grad is not None for p in layer.parameters())


def test_single_clip_and_no_clip_are_finite() -> None:
    torch.manual_seed(0)
    layer = SORALayer(D, HEADS, 32, dropout=0.0, band=3).eval()
    src = torch.randn(2, 6, D)
    mask = torch.zeros(2, 6)
    mask[:, 0] = 1  # the global token
    mask[0, 1] = 1  # one clip; sample 1 has no valid clip
    out = layer(src, mask)
    assert torch.isfinite(out).all()


def test_invalid_band_is_a_clear_error() -> None:
    with pytest.raises(MasraError, match="model.sora.band"):
        SORALayer(D, HEADS, 32, band=0)


def test_attention_uses_the_dense_path_on_short_videos_and_the_band_on_long_ones(monkeypatch) -> None:
    layer = make_layer(band=2).eval()
    calls = []
    monkeypatch.setattr(layer, "dense_attention", lambda *a: calls.append("dense") or SORALayer.dense_attention(layer, *a))
    monkeypatch.setattr(layer, "banded_attention", lambda *a: calls.append("banded") or SORALayer.banded_attention(layer, *a))
    short = DENSE_MAX_BAND_MULTIPLE * 5  # band 2 -> width 5
    for clips in (short, short + 1):
        src, mask, pos = torch.randn(1, clips + 1, D), torch.ones(1, clips + 1), torch.randn(1, clips + 1, D)
        layer.attention(src, mask, pos)
    assert calls == ["dense", "banded"]
