"""SORA: banded second-order relation and banded attention against dense O(L²) references."""

from __future__ import annotations


import math

import pytest
import torch
import torch.nn.functional as F

from masra.errors import MasraError
from masra.model.parts.sora import (
    DENSE_MAX_BAND_MULTIPLE,
    GLOBAL_TOKENS,
    SORALayer,
    dense_second_order,
    second_order_relation,
)

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


def reference_second_order(h: torch.Tensor, mask: torch.Tensor, band: int) -> torch.Tensor:
    """docs/method.md, one pair at a time: first-order rows A_i = [cos(h_i, h_k)]_k over i's window (valid k,
    |i - k| <= w) minus their mean; for valid i, j with |i - j| <= w, over the valid clips k of the overlap
    K_ij = {|i - k| <= w and |j - k| <= w}: R2_ij = cos(A_i|K_ij, A_j|K_ij), 0 when either part is zero."""
    batch, length, _ = h.shape
    out = torch.zeros(batch, length, length, dtype=torch.float64)
    h = h.double()
    for b in range(batch):
        valid = [bool(v) for v in mask[b]]

        def centred_row(i: int) -> dict[int, torch.Tensor]:
            window = [k for k in range(length) if valid[k] and abs(i - k) <= band]
            cos = {k: F.cosine_similarity(h[b, i], h[b, k], dim=0) for k in window}
            mean = torch.stack(list(cos.values())).mean()
            return {k: c - mean for k, c in cos.items()}

        for i in range(length):
            for j in range(length):
                if not (valid[i] and valid[j] and abs(i - j) <= band):
                    continue
                row_i, row_j = centred_row(i), centred_row(j)
                ks = [k for k in row_i if k in row_j]
                x, y = torch.stack([row_i[k] for k in ks]), torch.stack([row_j[k] for k in ks])
                if x.norm() > 1e-6 and y.norm() > 1e-6:
                    out[b, i, j] = x @ y / (x.norm() * y.norm())
    return out.float()


def reference_attention(layer: SORALayer, src, mask, pos, relation: torch.Tensor, g: int = GLOBAL_TOKENS) -> torch.Tensor:
    """docs/method.md's attention, one row at a time: clip i attends to the g valid context tokens and the valid
    clips j with |i - j| <= w, softmax_j(q_i·k_j/√dh + β_h·(R2_ij - mean_j' R2_ij')), the mean over the clips
    j' that row attends to; context rows attend to every valid token."""
    w, heads = layer.band, layer.nheads
    dh = src.shape[-1] // heads
    qk_in = src + pos
    q = layer.q_proj(qk_in).view(*src.shape[:2], heads, dh)
    k = layer.k_proj(qk_in).view(*src.shape[:2], heads, dh)
    v = layer.v_proj(src).view(*src.shape[:2], heads, dh)
    out = torch.zeros(src.shape[0], src.shape[1], heads, dh)
    for b in range(src.shape[0]):
        for t in range(src.shape[1]):
            keys = [u for u in range(src.shape[1]) if mask[b, u] and (t < g or u < g or abs(t - u) <= w)]
            for hd in range(heads):
                logits = torch.stack([q[b, t, hd] @ k[b, u, hd] / math.sqrt(dh) for u in keys])
                if t >= g and mask[b, t]:
                    row_mean = torch.stack([relation[b, t - g, u - g] for u in keys if u >= g]).mean()
                    bias = [relation[b, t - g, u - g] - row_mean if u >= g else torch.tensor(0.0) for u in keys]
                    logits = logits + layer.beta[hd] * torch.stack(bias)
                out[b, t, hd] = logits.softmax(0) @ v[b, keys, hd]
    return layer.out_proj(out.reshape(*src.shape[:2], -1))


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
def test_both_second_order_paths_equal_the_reference_from_the_definition(band: int) -> None:
    src, _, mask = make_inputs()
    h, m = src[:, 1:], mask[:, 1:]
    want = reference_second_order(h, m, band)
    torch.testing.assert_close(dense_second_order(h, m, band), want, atol=1e-5, rtol=1e-5)
    banded = second_order_relation(h, m, band)
    assert banded.shape == (2, 12, 2 * band + 1)
    torch.testing.assert_close(banded, dense_to_band(want, band), atol=1e-5, rtol=1e-5)


def test_clips_on_the_same_side_of_a_cut_relate_and_across_it_they_do_not() -> None:
    band, length = 4, 24
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, D, generator=gen)
    noise = 0.3 * torch.randn(1, length, D, generator=gen)
    h = torch.cat([a.expand(1, 12, D), b.expand(1, 12, D)], dim=1) + noise  # a cut at clip 12
    rel = second_order_relation(h, torch.ones(1, length), band)
    same_side = torch.stack([rel[0, 10, band + 1], rel[0, 13, band - 1]])  # (10, 11) and (13, 12)
    across = torch.stack([rel[0, 10, band + 3], rel[0, 13, band - 3]])  # (10, 13) and (13, 10)
    assert same_side.min() > 0.5 and across.max() < 0.0


def test_second_order_relation_ignores_what_all_clips_share() -> None:
    """Clips that share a large common direction (first-order cosines all near 0.8) relate as the varying
    parts alone do: the correlation removes the common offset and scale that made the cosine near 1 everywhere."""
    band, length = 3, 16
    gen = torch.Generator().manual_seed(1)
    varying = torch.randn(1, length, D, generator=gen)
    common = 3.0 * torch.randn(D, generator=gen)
    mask = torch.ones(1, length)
    shared = second_order_relation(varying + common, mask, band)
    first = F.cosine_similarity((varying + common)[0, :, None], (varying + common)[0, None], dim=-1)
    assert first[~torch.eye(length, dtype=torch.bool)].mean() > 0.7
    assert shared[dense_to_band(torch.ones(1, length, length), band).bool()].std() > 0.2  # content, not a constant


def test_relation_features_replace_the_clips_in_the_relation() -> None:
    layer = make_layer(band=2, beta=2.0)
    src, pos, mask = make_inputs()
    feats = torch.randn(2, 12, 5)
    with_feats = layer(src, mask, pos, relation_feats=feats)
    torch.testing.assert_close(layer(src, mask, pos, relation_feats=src[:, 1:]), layer(src, mask, pos))
    assert not torch.allclose(with_feats, layer(src, mask, pos))


@pytest.mark.parametrize("band, context", [(1, 1), (3, 1), (2, 3)])
def test_both_attention_paths_equal_the_reference_from_the_definition(band: int, context: int) -> None:
    """context 1: QD-DETR's global token; 3: Moment-DETR's query tokens lead the sequence, the last one padded
    in the second sample."""
    layer = make_layer(band)
    src, pos, mask = make_inputs()
    gen = torch.Generator().manual_seed(5)
    extra = context - 1  # context tokens beyond the first, put in front
    src = torch.cat([torch.randn(2, extra, D, generator=gen), src], dim=1)
    pos = torch.cat([torch.zeros(2, extra, D), pos], dim=1)
    mask = torch.cat([torch.ones(2, extra), mask], dim=1)
    if extra:
        mask[-1, extra - 1] = 0
    clips = slice(context, None)
    relation = reference_second_order(src[:, clips], mask[:, clips], band)
    want = reference_attention(layer, src, mask, pos, relation, context)
    valid = mask.bool()
    for path in (layer.banded_attention, layer.dense_attention):
        torch.testing.assert_close(path(src, mask, pos, context=context)[valid], want[valid], atol=1e-5, rtol=1e-4)


def test_attention_moved_by_the_bias_is_recorded_and_zero_without_bias() -> None:
    layer = make_layer(band=2, beta=0.0)
    src, pos, mask = make_inputs(length=20, pad_from=17)
    for path in (layer.banded_attention, layer.dense_attention):
        stats: dict[str, torch.Tensor] = {}
        path(src, mask, pos, None, stats)
        assert stats["sora_attention_moved"].item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        layer.beta.fill_(4.0)
    moved = []
    for path in (layer.banded_attention, layer.dense_attention):
        stats = {}
        path(src, mask, pos, None, stats)
        moved.append(stats["sora_attention_moved"].item())
    assert 0.01 < moved[0] < 1.0 and moved[0] == pytest.approx(moved[1], rel=1e-4)


def test_layer_matrices_are_xavier_initialised_and_beta_can_be_fixed() -> None:
    torch.manual_seed(0)
    layer = SORALayer(256, 8, 512, band=4)
    bound = math.sqrt(6 / (256 + 256))  # Xavier-uniform; PyTorch's default would stay below 1/sqrt(256)
    assert 1 / math.sqrt(256) < layer.q_proj.weight.abs().max() <= bound
    fixed = SORALayer(D, HEADS, 32, band=2, beta_init=0.0, learnable_beta=False)
    assert "beta" not in dict(fixed.named_parameters()) and fixed.beta.abs().sum() == 0


def test_the_layer_is_attention_then_norm_and_the_feed_forward_is_an_option() -> None:
    """Without ``feed_forward`` the layer is LN(x + attention(x)); with it, an encoder FFN sub-layer follows the
    same attention, so its output is that FFN applied to the former's."""
    src, pos, mask = make_inputs()
    torch.manual_seed(0)
    plain = SORALayer(D, HEADS, 32, dropout=0.0, band=2, feed_forward=False).eval()
    assert plain.ffn is None and not any(name.startswith("ffn.") for name in plain.state_dict())
    attended = plain.norm(src + plain.attention(src, mask, pos))
    torch.testing.assert_close(plain(src, mask, pos), attended)
    with_ffn = SORALayer(D, HEADS, 32, dropout=0.0, band=2, feed_forward=True).eval()
    with_ffn.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(with_ffn(src, mask, pos), with_ffn.ffn(attended))
    assert not torch.allclose(with_ffn(src, mask, pos), attended)


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


def test_the_row_mean_control_is_the_layer_without_bias_and_the_bias_has_no_row_offset() -> None:
    src, pos, mask = make_inputs(length=20, pad_from=17)
    torch.manual_seed(0)
    control = SORALayer(D, HEADS, 32, dropout=0.0, band=2, beta_init=3.0, relation="row_mean").eval()
    torch.manual_seed(0)
    unbiased = SORALayer(D, HEADS, 32, dropout=0.0, band=2, beta_init=0.0).eval()
    for path in ("banded_attention", "dense_attention"):
        torch.testing.assert_close(getattr(control, path)(src, mask, pos), getattr(unbiased, path)(src, mask, pos))
    # With content, the bias moves attention between clips: the clip-only share is recorded and positive.
    torch.manual_seed(0)
    layer = SORALayer(D, HEADS, 32, dropout=0.0, band=2, beta_init=3.0).eval()
    stats: dict[str, torch.Tensor] = {}
    layer.dense_attention(src, mask, pos, None, stats)
    assert stats["sora_attention_moved_clips"] > 0.01 and stats["sora_bias_spread"] > 0.1


def test_unknown_relation_is_a_clear_error() -> None:
    with pytest.raises(MasraError, match="model.sora.relation"):
        SORALayer(D, HEADS, 32, band=2, relation="cubic")
