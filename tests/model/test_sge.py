"""SGE: semantic head, gated back-projection fusion, caption loss."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from masra.errors import MasraError
from masra.model.sge import GATE_BIAS_INIT, SemanticGuidedEnhancement, sge_caption_loss

D, DS = 16, 12


def make() -> SemanticGuidedEnhancement:
    torch.manual_seed(0)
    return SemanticGuidedEnhancement(D, DS)


def test_shapes_and_small_initial_gate() -> None:
    sge = make()
    memory = torch.randn(2, 6, D)
    mask = torch.ones(2, 6)
    enhanced, semantics = sge(memory, mask)
    assert enhanced.shape == (2, 6, D) and semantics.shape == (2, 6, DS)
    # The update is gate·ψ(φ̂) with gate = σ(GATE_BIAS_INIT) everywhere at initialisation.
    back = sge.back_projection(F.normalize(semantics, dim=-1))
    torch.testing.assert_close(enhanced - memory, torch.sigmoid(torch.tensor(GATE_BIAS_INIT)) * back)


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
    with pytest.raises(MasraError, match="model.sge.semantic_dim"):
        SemanticGuidedEnhancement(D, None)
    with pytest.raises(MasraError, match="model.sge.semantic_dim"):
        SemanticGuidedEnhancement(D, 0)


def test_caption_loss_counts_only_captioned_valid_clips_of_samples_with_priors() -> None:
    semantics = torch.randn(3, 4, DS, requires_grad=True)
    captions = F.normalize(torch.randn(3, 4, DS), dim=-1)
    caption_mask = torch.tensor([[1.0, 1, 0, 1], [1, 1, 1, 1], [1, 1, 1, 1]])
    video_mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
    has_priors = torch.tensor([1.0, 0.0, 1.0])
    loss = sge_caption_loss(semantics, captions, caption_mask, video_mask, has_priors)[0]
    keep = (caption_mask * video_mask * has_priors[:, None]).bool()
    expected = (1 - F.cosine_similarity(semantics[keep], captions[keep], dim=-1)).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert semantics.grad[1].abs().sum() == 0 and semantics.grad[0, 2].abs().sum() == 0
    assert semantics.grad[2].abs().sum() > 0


def test_caption_loss_is_zero_when_no_clip_has_a_prior() -> None:
    semantics = torch.randn(2, 3, DS, requires_grad=True)
    mask = torch.ones(2, 3)
    none = sge_caption_loss(semantics, None, None, mask, None)[0]
    assert none.item() == 0.0
    empty = sge_caption_loss(semantics, torch.randn(2, 3, DS), mask, mask, torch.zeros(2))[0]
    assert empty.item() == 0.0


def test_gradient_from_caption_loss_reaches_the_head_and_the_memory() -> None:
    sge = make()
    memory = torch.randn(2, 5, D, requires_grad=True)
    mask = torch.ones(2, 5)
    enhanced, semantics = sge(memory, mask)
    captions = F.normalize(torch.randn(2, 5, DS), dim=-1)
    (sge_caption_loss(semantics, captions, mask, mask, None)[0] + enhanced.sum()).backward()
    assert memory.grad.abs().sum() > 0
    for name, p in sge.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_training_the_head_aligns_it_with_the_captions() -> None:
    sge = make()
    memory = torch.randn(1, 8, D)
    mask = torch.ones(1, 8)
    captions = F.normalize(torch.randn(1, 8, DS), dim=-1)
    optimizer = torch.optim.Adam(sge.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        optimizer.zero_grad()
        loss = sge_caption_loss(sge(memory, mask)[1], captions, mask, mask, None)[0]
        first = loss.item() if first is None else first
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first


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
