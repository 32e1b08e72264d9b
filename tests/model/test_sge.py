"""SGE: semantic head, gated back-projection fusion, caption loss."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from masra.errors import MasraError
from masra.model.parts.sge import GATE_BIAS_INIT, SemanticGuidedEnhancement, sge_caption_loss

D, DS = 16, 12


def make() -> SemanticGuidedEnhancement:
    torch.manual_seed(0)
    return SemanticGuidedEnhancement(D, DS)


def test_shapes_and_initial_gate() -> None:
    sge = make()
    memory = torch.randn(2, 6, D)
    mask = torch.ones(2, 6)
    enhanced, semantics = sge(memory, mask)
    assert enhanced.shape == (2, 6, D) and semantics.shape == (2, 6, DS)
    # The update is gate·LN(ψ(φ̂)) with gate = σ(GATE_BIAS_INIT) everywhere at initialisation.
    back = F.layer_norm(sge.back_projection(F.normalize(semantics, dim=-1)), (D,))
    torch.testing.assert_close(enhanced - memory, torch.sigmoid(torch.tensor(GATE_BIAS_INIT)) * back)


@pytest.mark.parametrize(("d_model", "semantic_dim"), [(64, 384), (256, 512)])
def test_the_fusion_moves_the_memory_at_its_own_initialisation(d_model: int, semantic_dim: int) -> None:
    """The fused semantics have the scale of the post-norm memory, so at its own initialisation SGE moves the
    memory by about the gate, σ(-2) ≈ 0.12 of its norm; without the layer norm ψ(φ̂) is ~0.04 per channel and
    the fusion moved the memory by ~0.5 %, too little for the gate or the task to notice."""
    torch.manual_seed(0)
    memory = F.layer_norm(torch.randn(4, 75, d_model), (d_model,))
    mask = torch.ones(4, 75)
    moved = {}
    for back_norm in ("layer_norm", "none"):
        torch.manual_seed(1)
        sge = SemanticGuidedEnhancement(d_model, semantic_dim, back_norm)
        moved[back_norm] = ((sge(memory, mask)[0] - memory).norm() / memory.norm()).item()
    gate = torch.sigmoid(torch.tensor(GATE_BIAS_INIT)).item()
    assert moved["layer_norm"] == pytest.approx(gate, rel=0.05)
    assert moved["none"] < 0.01


def test_an_unknown_back_norm_is_refused() -> None:
    with pytest.raises(MasraError, match="model.sge.back_norm"):
        SemanticGuidedEnhancement(D, DS, "batch_norm")


def test_padded_clips_are_unchanged_and_do_not_affect_valid_clips() -> None:
    sge = make()
    memory = torch.randn(1, 6, D)
    mask = torch.tensor([[1.0, 1, 1, 1, 0, 0]])
    enhanced, _ = sge(memory, mask)
    torch.testing.assert_close(enhanced[:, 4:], memory[:, 4:])
    changed = memory.clone()
    changed[:, 4:] = 50.0
    torch.testing.assert_close(sge(changed, mask)[0][:, :4], enhanced[:, :4])


def test_missing_semantic_dim_is_a_clear_error() -> None:
    with pytest.raises(MasraError, match="data.prior_dir"):
        SemanticGuidedEnhancement(D, None)
    with pytest.raises(MasraError, match="data.prior_dir"):
        SemanticGuidedEnhancement(D, 0)


def reference_caption_loss(semantics, captions, valid, band: int, temperature: float) -> torch.Tensor:
    """The definition, one row at a time: captions centred on their sample's mean caption (c̃); over the valid
    captioned clips j with |i - j| <= w, soft targets softmax_j(cos(c̃_i, c̃_j) / τ), cross-entropy against
    log softmax_j(cos(φ_i, c̃_j) / τ); rows with >= 2 candidates, averaged."""
    losses = []
    captions = captions.clone()
    for b in range(semantics.shape[0]):
        if valid[b].any():
            captions[b, valid[b]] -= captions[b, valid[b]].mean(0)
    for b in range(semantics.shape[0]):
        for i in range(semantics.shape[1]):
            if not valid[b, i]:
                continue
            js = [j for j in range(semantics.shape[1]) if valid[b, j] and abs(i - j) <= band]
            if len(js) < 2:
                continue
            target = torch.stack([F.cosine_similarity(captions[b, i], captions[b, j], dim=0) for j in js])
            logits = torch.stack([F.cosine_similarity(semantics[b, i], captions[b, j], dim=0) for j in js])
            target = (target / temperature).softmax(0)
            losses.append(-(target * (logits / temperature).log_softmax(0)).sum())
    return torch.stack(losses).mean()


def test_caption_loss_counts_only_captioned_valid_clips_of_samples_with_priors() -> None:
    gen = torch.Generator().manual_seed(0)
    semantics = torch.randn(3, 6, DS, generator=gen, requires_grad=True)
    captions = F.normalize(torch.randn(3, 6, DS, generator=gen), dim=-1)
    caption_mask = torch.tensor([[1.0, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 1]])
    video_mask = torch.tensor([[1.0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    has_priors = torch.tensor([1.0, 0.0, 1.0])
    terms = sge_caption_loss(semantics, captions, caption_mask, video_mask, has_priors, band=2, temperature=0.2)
    keep = (caption_mask * video_mask * has_priors[:, None]).bool()
    torch.testing.assert_close(terms["loss_sge_caption"], reference_caption_loss(semantics, captions, keep, 2, 0.2))
    terms["loss_sge_caption"].backward()
    assert semantics.grad[1].abs().sum() == 0 and semantics.grad[0, 2].abs().sum() == 0
    assert semantics.grad[2].abs().sum() > 0


def test_caption_loss_rewards_what_tells_a_clip_from_its_neighbours_not_what_they_share() -> None:
    """Captions = a large shared part + a clip-specific part. Predicting the video's mean caption scores at the
    chance level; predicting the specific part alone scores far below it and retrieves every caption. (The
    former 1 - cos loss preferred the mean caption: it is closer to every caption than the specific parts.)"""
    gen = torch.Generator().manual_seed(0)
    shared = 3.0 * torch.randn(DS, generator=gen)  # captions at cos ~0.9 with each other
    specific = torch.randn(1, 8, DS, generator=gen)
    captions = F.normalize(shared + specific, dim=-1)
    mask = torch.ones(1, 8)
    mean_caption = captions.mean(1, keepdim=True).expand_as(captions)
    at_mean = sge_caption_loss(mean_caption, captions, mask, mask, None, band=8)
    at_specific = sge_caption_loss(specific, captions, mask, mask, None, band=8)
    chance = at_mean["loss_sge_caption_chance"]
    torch.testing.assert_close(chance, torch.log(torch.tensor(8.0)))
    assert at_mean["loss_sge_caption"] > 0.9 * chance
    assert at_specific["loss_sge_caption"] < 0.5 * chance
    assert at_specific["sge_caption_accuracy"] == 1.0 and at_specific["sge_caption_accuracy_chance"] == 1 / 8
    assert (1 - F.cosine_similarity(mean_caption, captions, dim=-1)).mean() < (
        1 - F.cosine_similarity(specific, captions, dim=-1)
    ).mean()


def test_clips_that_share_a_caption_share_the_target_and_count_as_retrieved() -> None:
    captions = F.normalize(torch.eye(DS)[[0, 0, 0, 1, 1]].unsqueeze(0), dim=-1)  # two events' captions
    mask = torch.ones(1, 5)
    terms = sge_caption_loss(captions.clone(), captions, mask, mask, None, band=4)
    assert terms["sge_caption_accuracy"] == 1.0
    torch.testing.assert_close(terms["sge_caption_accuracy_chance"], torch.tensor((3 * 3 / 5 + 2 * 2 / 5) / 5))


def test_caption_loss_is_zero_when_no_clip_has_a_prior() -> None:
    semantics = torch.randn(2, 3, DS, requires_grad=True)
    mask = torch.ones(2, 3)
    none = sge_caption_loss(semantics, None, None, mask, None)
    assert all(value.item() == 0.0 for value in none.values())
    empty = sge_caption_loss(semantics, torch.randn(2, 3, DS), mask, mask, torch.zeros(2))
    assert empty["loss_sge_caption"].item() == 0.0


def test_gradient_from_caption_loss_reaches_the_head_and_the_memory() -> None:
    sge = make()
    memory = torch.randn(2, 5, D, requires_grad=True)
    mask = torch.ones(2, 5)
    enhanced, semantics = sge(memory, mask)
    captions = F.normalize(torch.randn(2, 5, DS), dim=-1)
    (sge_caption_loss(semantics, captions, mask, mask, None)["loss_sge_caption"] + enhanced.sum()).backward()
    assert memory.grad.abs().sum() > 0
    for name, p in sge.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_training_the_head_retrieves_each_clips_caption() -> None:
    sge = make()
    memory = torch.randn(1, 8, D)
    mask = torch.ones(1, 8)
    captions = F.normalize(torch.randn(1, 8, DS), dim=-1)
    optimizer = torch.optim.Adam(sge.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        terms = sge_caption_loss(sge(memory, mask)[1], captions, mask, mask, None)
        terms["loss_sge_caption"].backward()
        optimizer.step()
    assert terms["loss_sge_caption"] < 0.2 * terms["loss_sge_caption_chance"]
    assert terms["sge_caption_accuracy"] == 1.0


def test_long_training_inputs_run_checkpointed_with_the_same_outputs_and_gradients(monkeypatch) -> None:
    import masra.model.layers as layers

    sge = make()
    memory = torch.randn(2, 6, D)
    mask = torch.tensor([[1.0] * 6, [1.0] * 4 + [0.0] * 2])

    def step() -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        sge.zero_grad()
        leaf = memory.clone().requires_grad_()
        stats: dict[str, torch.Tensor] = {}
        enhanced, semantics = sge(leaf, mask, stats)
        (enhanced.square().sum() + semantics.sum()).backward()
        return [enhanced.detach(), semantics.detach(), stats["sge_gate"], leaf.grad], {
            name: p.grad.clone() for name, p in sge.named_parameters()
        }

    plain, plain_grads = step()
    monkeypatch.setattr(layers, "CHECKPOINT_MIN_ROWS", 0)  # every training input counts as long
    with mock.patch.object(layers, "checkpoint", wraps=layers.checkpoint) as spy:
        checkpointed, grads = step()
    assert spy.call_count == 1
    for got, want in zip(checkpointed, plain):
        torch.testing.assert_close(got, want)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], msg=name)


def test_a_batch_without_captions_counts_no_clip() -> None:
    """Under DDP the row count is averaged over the ranks: a rank whose batch has no priors (no caption
    mask) must count 0 rows, not every valid clip."""
    from unittest import mock

    counts = []
    with mock.patch("masra.model.parts.sge.mean_over_ranks", side_effect=lambda c: counts.append(c) or c):
        sge_caption_loss(torch.randn(2, 5, DS), None, None, torch.ones(2, 5), None)
    assert counts == [0]
