"""LRCA: banded relational KL against a dense O(L²) reference, masking and edge cases."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masra.model.parts.lrca import LocalRelationalConsistency, lrca_loss

D, DS, P = 16, 12, 8


def dense_lrca(video_proj, tau_v, captions, caption_mask, video_mask, has_priors, band, tau_t):
    """(loss, chance level) from full [L, L] relation matrices, one row at a time; rows need two neighbours."""
    valid = caption_mask * video_mask * has_priors[:, None]
    text_rel = F.normalize(captions, dim=-1) @ F.normalize(captions, dim=-1).transpose(1, 2)
    video_rel = F.normalize(video_proj, dim=-1) @ F.normalize(video_proj, dim=-1).transpose(1, 2)
    rows, chance = [], []
    for b in range(captions.shape[0]):
        for i in range(captions.shape[1]):
            if not valid[b, i]:
                continue
            cols = [j for j in range(captions.shape[1]) if j != i and abs(i - j) <= band and valid[b, j]]
            if len(cols) < 2:  # one neighbour: both distributions are 1 on it, the KL says nothing
                continue
            p_t = (text_rel[b, i, cols] / tau_t).softmax(-1)
            log_p_v = (video_rel[b, i, cols] / tau_v).log_softmax(-1)
            rows.append((p_t * (p_t.log() - log_p_v)).sum())
            chance.append((p_t * (p_t.log() + torch.tensor(float(len(cols))).log())).sum())
    return torch.stack(rows).mean(), torch.stack(chance).mean()


def sample_inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    captions = F.normalize(torch.randn(3, 10, DS, generator=gen), dim=-1)
    video_proj = torch.randn(3, 10, P, generator=gen)
    caption_mask = torch.ones(3, 10)
    caption_mask[0, 4] = 0
    video_mask = torch.ones(3, 10)
    video_mask[1, 7:] = 0
    has_priors = torch.tensor([1.0, 1.0, 0.0])
    return video_proj, captions, caption_mask, video_mask, has_priors


def test_banded_loss_equals_dense_reference() -> None:
    video_proj, captions, caption_mask, video_mask, has_priors = sample_inputs()
    tau_v = torch.tensor(0.2)
    for band in (1, 3, 12):
        got = lrca_loss(
            video_proj, tau_v, captions, caption_mask, video_mask, has_priors, band=band, text_temperature=0.1
        )
        want = dense_lrca(video_proj, tau_v, captions, caption_mask, video_mask, has_priors, band, 0.1)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_padding_uncaptioned_and_far_clips_never_change_the_loss() -> None:
    video_proj, captions, caption_mask, video_mask, has_priors = sample_inputs()
    tau_v = torch.tensor(0.1)
    base = lrca_loss(video_proj, tau_v, captions, caption_mask, video_mask, has_priors, band=2)[0]
    changed_proj, changed_caps = video_proj.clone(), captions.clone()
    changed_proj[1, 7:] = 100.0  # padding
    changed_proj[0, 4] = -7.0  # caption-less clip
    changed_caps[2] = F.normalize(torch.randn(10, DS), dim=-1)  # sample without priors
    changed_proj[2] = 3.0
    again = lrca_loss(changed_proj, tau_v, changed_caps, caption_mask, video_mask, has_priors, band=2)[0]
    torch.testing.assert_close(again, base)


def test_zero_loss_when_relations_agree_and_positive_when_they_disagree() -> None:
    _, captions, _, _, _ = sample_inputs()
    mask = torch.ones(3, 10)
    agree = lrca_loss(captions, torch.tensor(0.1), captions, mask, mask, None, band=3, text_temperature=0.1)[0]
    assert agree.item() < 1e-6
    shuffled = captions[:, torch.randperm(10, generator=torch.Generator().manual_seed(1))]
    assert lrca_loss(shuffled, torch.tensor(0.1), captions, mask, mask, None, band=3)[0].item() > 0.01


def test_edge_cases_are_zero_not_nan() -> None:
    video_proj = torch.randn(2, 1, P, requires_grad=True)
    one = torch.ones(2, 1)
    caps = F.normalize(torch.randn(2, 1, DS), dim=-1)
    single = lrca_loss(video_proj, torch.tensor(0.1), caps, one, one, None)[0]  # one clip: no neighbour
    assert single.item() == 0.0
    two = torch.ones(1, 2)
    pair = lrca_loss(torch.randn(1, 2, P), torch.tensor(0.1), torch.randn(1, 2, DS), two, two, None)[0]
    assert pair.item() == 0.0  # rows with one neighbour are not counted
    no_priors = lrca_loss(video_proj, torch.tensor(0.1), None, None, one, None)[0]
    assert no_priors.item() == 0.0
    four = torch.ones(2, 4)
    none_with_priors = lrca_loss(torch.randn(2, 4, P), torch.tensor(0.1), torch.randn(2, 4, DS), four, four, torch.zeros(2))[0]
    assert none_with_priors.item() == 0.0


def test_gradient_reaches_projection_and_learnable_temperature() -> None:
    torch.manual_seed(0)
    module = LocalRelationalConsistency(D, P, video_temperature_init=0.1)
    memory = torch.randn(2, 9, D, requires_grad=True)
    out = {"lrca_video_proj": module.projection(memory), "lrca_video_temperature": module.video_temperature()}
    assert out["lrca_video_proj"].shape == (2, 9, P)
    assert abs(out["lrca_video_temperature"].item() - 0.1) < 1e-6
    _, captions, _, _, _ = sample_inputs()
    mask = torch.ones(2, 9)
    loss = lrca_loss(out["lrca_video_proj"], out["lrca_video_temperature"], captions[:2, :9], mask, mask, None, band=2)[0]
    loss.backward()
    assert memory.grad.abs().sum() > 0
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
