"""DAI: context-aware codebook, decoupled cross-attention and its two losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from masra.errors import MasraError
from masra.model.parts.dai import (
    ContextCodebook,
    DecoupledCrossAttention,
    codebook_diversity_loss,
    dai_relevance_loss,
    entry_statistics,
    relevance_auc,
)

D, HEADS, K = 16, 4, 8


def inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    video = torch.randn(2, 7, D, generator=gen)
    text = torch.randn(2, 5, D, generator=gen)
    video_mask = torch.ones(2, 7)
    video_mask[1, 5:] = 0
    text_mask = torch.ones(2, 5)
    text_mask[0, 3:] = 0
    return video, video_mask, text, text_mask


@pytest.mark.parametrize("context", ["slots", "mlp", "xattn"])
def test_codebook_starts_context_free_and_ignores_padding(context: str) -> None:
    torch.manual_seed(0)
    book = ContextCodebook(D, K, context, nheads=HEADS)
    video, video_mask, _, _ = inputs()
    codes = book(video, video_mask)
    assert codes.shape == (2, K, D)
    torch.testing.assert_close(codes, book.codebook.expand(2, -1, -1))  # zero-initialised context branch
    for p in book.parameters():
        torch.nn.init.normal_(p)  # a trained-looking codebook
    codes = book(video, video_mask)
    assert not torch.allclose(codes[0], codes[1])  # entries depend on the video
    changed = video.clone()
    changed[1, 5:] = 1e3  # padding
    torch.testing.assert_close(book(changed, video_mask), codes)


def test_unknown_context_mode_is_a_clear_error() -> None:
    with pytest.raises(MasraError, match="model.dai.context"):
        ContextCodebook(D, K, "lstm")


def dense_reference(att: DecoupledCrossAttention, query, key, value, key_mask, codebook):
    """Per-head softmax over [text ; codebook], computed one clip at a time."""
    dh = D // HEADS
    q = att.q_proj(query).view(*query.shape[:2], HEADS, dh)
    k = att.k_proj(torch.cat([key, codebook], 1)).view(key.shape[0], -1, HEADS, dh)
    v = att.v_proj(value).view(*value.shape[:2], HEADS, dh)
    n = key.shape[1]
    outs, rels = [], []
    for b in range(query.shape[0]):
        keep = torch.cat([key_mask[b].bool(), torch.ones(codebook.shape[1], dtype=torch.bool)])
        per_head, mass = [], []
        for h in range(HEADS):
            logits = q[b, :, h] @ k[b, :, h].t() / math.sqrt(dh)  # [L, N+K]
            logits[:, n:] += att.codebook_bias[h]
            prob = logits.masked_fill(~keep, float("-inf")).softmax(-1)
            per_head.append(prob[:, :n] @ v[b, :, h])
            mass.append(prob[:, :n].sum(-1))
        outs.append(torch.cat(per_head, -1))
        rels.append(torch.stack(mass).mean(0))
    return att.out_proj(torch.stack(outs)), torch.stack(rels)


def test_decoupled_attention_matches_reference_and_sums_only_query_values() -> None:
    torch.manual_seed(0)
    att = DecoupledCrossAttention(D, HEADS, K)
    video, video_mask, text, text_mask = inputs()
    codes = torch.randn(2, K, D)
    out, rel = att(video, text, text, text_mask, codebook=codes)
    assert out.shape == (2, 7, D) and rel.shape == (2, 7)
    ref_out, ref_rel = dense_reference(att, video, text, text, text_mask, codes)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rel, ref_rel, atol=1e-6, rtol=1e-5)
    assert ((rel > 0) & (rel < 1)).all()
    # Padded query tokens never matter.
    changed = text.clone()
    changed[0, 3:] = 1e3
    out2, rel2 = att(video, changed, changed, text_mask, codebook=codes)
    torch.testing.assert_close(out2[0], out[0])
    torch.testing.assert_close(rel2[0], rel[0])


def test_codebook_mass_starts_small_and_absorbs_when_codebook_matches() -> None:
    torch.manual_seed(0)
    att = DecoupledCrossAttention(D, HEADS, K)
    video, _, text, _ = inputs()
    text_mask = torch.ones(2, 5)
    codes = torch.randn(2, K, D)
    _, rel = att(video, text, text, text_mask, codebook=codes)
    # bias -log K: the codebook starts with about 1/(N+1) of the mass.
    assert rel.mean() > 0.7
    with torch.no_grad():
        att.codebook_bias.fill_(10.0)
    out, rel_absorbed = att(video, text, text, text_mask, codebook=codes)
    assert rel_absorbed.max() < 0.01
    # Absorbed mass shrinks the text contribution instead of being renormalised onto the query.
    assert (out - att.out_proj.bias).norm() < 0.05 * out.norm()


def test_gradients_reach_codebook_attention_and_context() -> None:
    torch.manual_seed(0)
    book = ContextCodebook(D, K, "mlp")
    att = DecoupledCrossAttention(D, HEADS, K)
    params = list(book.named_parameters()) + list(att.named_parameters())
    optimizer = torch.optim.SGD([p for _, p in params], lr=0.1)
    video, video_mask, text, text_mask = inputs()
    labels = torch.zeros(2, 7)
    labels[:, 2:4] = 1
    # Two steps: the context MLP's first layer only gets gradient once its zero-initialised last layer moved.
    for _ in range(2):
        optimizer.zero_grad()
        codes = book(video, video_mask)
        out, rel = att(video, text, text, text_mask, codebook=codes)
        loss = out.sum() + dai_relevance_loss(rel, labels, video_mask)[0] + codebook_diversity_loss(book.codebook)
        loss.backward()
        optimizer.step()
    for name, p in params:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_relevance_bce_is_computed_over_valid_clips_only() -> None:
    rel = torch.tensor([[0.9, 0.2, 0.5], [0.7, 0.3, 0.6]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    loss, chance = dai_relevance_loss(rel, labels, mask)
    expected = F.binary_cross_entropy(rel[mask.bool()], labels[mask.bool()])
    torch.testing.assert_close(loss, expected)
    rate = labels[mask.bool()].mean()  # the chance level: BCE of predicting the positive rate everywhere
    torch.testing.assert_close(chance, F.binary_cross_entropy(rate.expand(5), labels[mask.bool()]))
    # all clips relevant and a single clip: zero, not a push of a_i towards 1
    assert dai_relevance_loss(torch.ones(1, 1), torch.ones(1, 1), torch.ones(1, 1))[0].item() == 0.0
    # no labels (inference data): zero
    assert dai_relevance_loss(rel, None, mask)[0].item() == 0.0


def test_relevance_bce_leaves_out_samples_whose_clips_are_all_relevant() -> None:
    """TVSum / YouTube Highlights: label > 0 on nearly every clip; such samples would only switch DAI off."""
    rel = torch.tensor([[0.9, 0.2, 0.5], [0.7, 0.3, 0.6]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # sample 1: both valid clips relevant
    loss, _ = dai_relevance_loss(rel, labels, mask)
    torch.testing.assert_close(loss, F.binary_cross_entropy(rel[0], labels[0]))
    loss.backward()
    assert rel.grad[1].abs().sum() == 0


def test_diversity_loss_is_zero_for_orthogonal_and_one_for_identical_entries() -> None:
    orthogonal = torch.eye(4, D).unsqueeze(0)
    assert codebook_diversity_loss(orthogonal).item() == pytest.approx(0.0, abs=1e-6)
    identical = torch.ones(1, 4, D)
    assert codebook_diversity_loss(identical).item() == pytest.approx(1.0, abs=1e-5)
    opposite = torch.stack([torch.ones(D), -torch.ones(D)]).unsqueeze(0)
    assert codebook_diversity_loss(opposite).item() == pytest.approx(1.0, abs=1e-5)  # |cos|, not cos
    assert codebook_diversity_loss(torch.randn(2, 1, D)).item() == 0.0


def test_diversity_loss_accepts_the_codebook_parameter() -> None:
    entries = torch.randn(K, D)
    torch.testing.assert_close(codebook_diversity_loss(entries), codebook_diversity_loss(entries.unsqueeze(0)))


def test_xattn_context_is_per_entry_and_mlp_context_is_one_shared_shift() -> None:
    video, video_mask, _, _ = inputs()
    shifts = {}
    for context in ("xattn", "mlp"):
        torch.manual_seed(0)
        book = ContextCodebook(D, K, context, nheads=HEADS)
        for p in book.parameters():
            torch.nn.init.normal_(p)  # a trained-looking codebook
        shifts[context] = book(video, video_mask) - book.codebook  # [B, K, d]
    spread = {c: (s - s.mean(1, keepdim=True)).norm() / s.norm() for c, s in shifts.items()}
    assert spread["mlp"] < 1e-6  # the same shift for every entry
    assert spread["xattn"] > 0.1  # each entry its own context


def test_codebook_values_keep_the_absorbed_mass_in_the_output() -> None:
    video, _, text, text_mask = inputs()
    codes = torch.randn(2, K, D)
    outs = {}
    for values in (False, True):
        torch.manual_seed(0)
        att = DecoupledCrossAttention(D, HEADS, K, codebook_values=values)
        with torch.no_grad():
            att.codebook_bias.fill_(10.0)  # nearly all mass on the codebook
        outs[values], _ = att(video, text, text, text_mask, codebook=codes)
        base = att.out_proj.bias
    assert (outs[False] - base).norm() < 0.05 * outs[False].norm()  # discarded
    assert (outs[True] - base).norm() > 0.5 * outs[True].norm()  # kept: the codebook's values


def clustered_video(length: int = 40, dim: int = 64, clusters: int = 4) -> torch.Tensor:
    """Layer-normalised clips in ``clusters`` runs of similar content, [1, length, dim]."""
    gen = torch.Generator().manual_seed(1)
    centres = torch.randn(clusters, dim, generator=gen)
    clips = centres.repeat_interleave(length // clusters, 0) + 0.5 * torch.randn(length, dim, generator=gen)
    return F.layer_norm(clips, (dim,)).unsqueeze(0)


def test_slot_entries_read_different_clips_at_their_own_initialisation() -> None:
    """The entries compete for the clips, so at the module's own initialisation (no re-initialised weights)
    each reads its own clips: read weights far from uniform and reads that differ between entries. The
    softmax over the clips per entry ("xattn") reads nearly the same average with every entry."""
    video = clustered_video()
    mask = torch.ones(1, video.shape[1])
    torch.manual_seed(0)
    stats: dict[str, torch.Tensor] = {}
    ContextCodebook(64, 16, "slots", nheads=4)(video, mask, stats)
    assert stats["dai_entry_entropy"] < 0.85 and stats["dai_entry_specific"] > 0.25
    torch.manual_seed(0)
    xattn = ContextCodebook(64, 16, "xattn", nheads=4)
    _, weights = xattn.context_attn(xattn.codebook.unsqueeze(0), video, video, need_weights=True)  # [1, K, L]
    plain = entry_statistics(weights.detach(), (weights @ video).detach(), mask)
    assert plain["dai_entry_entropy"] > 0.95 and plain["dai_entry_specific"] < 0.1


def test_entry_statistics_from_hand_made_weights() -> None:
    mask = torch.ones(1, 4)
    uniform = torch.full((1, 2, 4), 0.25)
    one_hot = torch.eye(4)[:2].unsqueeze(0)  # entry 0 reads clip 0, entry 1 reads clip 1
    clips = torch.eye(4).unsqueeze(0)
    same = entry_statistics(uniform, uniform @ clips, mask)
    assert same["dai_entry_entropy"].item() == pytest.approx(1.0) and same["dai_entry_specific"].item() == pytest.approx(0.0)
    apart = entry_statistics(one_hot, one_hot @ clips, mask)
    assert apart["dai_entry_entropy"].item() == pytest.approx(0.0, abs=1e-6)
    assert apart["dai_entry_specific"].item() == pytest.approx(0.5)  # r = e0, e1; mean (e0 + e1) / 2


def test_relevance_bce_is_per_layer_and_negative_pairs_are_targets_of_zero() -> None:
    layers = torch.tensor([[[0.9, 0.2, 0.5], [0.6, 0.4, 0.7]]], requires_grad=True)  # [B=1, layers=2, L=3]
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    mask = torch.ones(1, 3)
    loss, _ = dai_relevance_loss(layers, labels, mask)
    per_layer = [F.binary_cross_entropy(layers[0, i], labels[0]) for i in range(2)]
    torch.testing.assert_close(loss, torch.stack(per_layer).mean())  # not the BCE of the layer average
    negative = torch.tensor([[[0.3, 0.1, 0.2], [0.5, 0.6, 0.4]]], requires_grad=True)
    loss, chance = dai_relevance_loss(layers, labels, mask, negative)
    want = torch.stack(
        [F.binary_cross_entropy(torch.cat([layers[0, i], negative[0, i]]), torch.cat([labels[0], torch.zeros(3)]))
         for i in range(2)]
    ).mean()
    torch.testing.assert_close(loss, want)
    rate = torch.tensor(2 / 6)
    torch.testing.assert_close(chance, -(rate * rate.log() + (1 - rate) * (1 - rate).log()))
    loss.backward()
    assert negative.grad.abs().sum() > 0


def test_relevance_auc_matches_the_pairwise_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (30,), generator=gen).float()  # with ties
    target = (torch.rand(30, generator=gen) > 0.6).float()
    weight = (torch.rand(30, generator=gen) > 0.2).float()
    keep = weight > 0
    pos, neg = scores[keep][target[keep] > 0], scores[keep][target[keep] == 0]
    pairwise = ((pos[:, None] > neg[None]).float() + 0.5 * (pos[:, None] == neg[None]).float()).mean()
    torch.testing.assert_close(relevance_auc(scores, target, weight), pairwise)
    assert relevance_auc(scores, torch.zeros(30), weight).item() == 0.5
