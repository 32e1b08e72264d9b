"""masra's CPU dropout: PyTorch's dropout distribution from a quarter of the generator draws."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from masra.model.dropout import Dropout, dropout, keep_mask

N = 400_000  # elements per statistical check: the keep rate's standard error is <= 0.0008


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_keep_rate_and_expectation_match_the_dropout_probability(p):
    torch.manual_seed(0)
    mask, scale = keep_mask((N,), p)
    rate = mask.float().mean().item()
    assert abs(rate - (1 - p)) < 5 * ((p * (1 - p) / N) ** 0.5)
    assert abs(scale - 1 / (1 - p)) < 1e-4 / (1 - p)  # the rounding of P(keep) to 1/65536 only
    out = dropout(torch.ones(N), p, training=True)
    assert abs(out.mean().item() - 1.0) < 5 * ((p / (1 - p) / N) ** 0.5)  # unbiased


def test_the_four_lanes_of_one_draw_are_independent():
    """Neighbouring elements share a 64-bit draw; their masks must still be independent."""
    torch.manual_seed(1)
    mask, _ = keep_mask((N // 4, 4), 0.5)
    lanes = mask.float()
    for a in range(4):
        for b in range(a + 1, 4):
            both = (lanes[:, a] * lanes[:, b]).mean().item()
            assert abs(both - 0.25) < 5 * (0.1875 / (N // 4)) ** 0.5


def test_kept_elements_are_scaled_dropped_are_zero_and_the_gradient_uses_the_same_mask():
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(2)
    out = dropout(x, 0.5, training=True)
    kept = out != 0
    assert 0.3 < kept.float().mean() < 0.7
    assert torch.equal(out[kept], x[kept] * 2.0)  # p = 0.5: the scale is exact
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, kept.float() * 2.0)


def test_same_seed_same_mask_and_eval_is_identity():
    x = torch.randn(10, 20)
    torch.manual_seed(3)
    first = dropout(x, 0.2, training=True)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.2, training=True), first)
    layer = Dropout(0.2)
    assert torch.equal(layer.eval()(x), x)
    assert dropout(x, 0.0, training=True) is x
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))
    with pytest.raises(ValueError):
        Dropout(1.5)


def test_activation_checkpointing_recomputes_the_same_masks():
    """checkpoint restores the RNG state before recomputing: gradients equal those without it."""
    x = torch.randn(8, 50, requires_grad=True)
    weight = torch.randn(50, 50, requires_grad=True)

    def block(inp: torch.Tensor) -> torch.Tensor:
        return dropout(torch.tanh(inp @ weight), 0.3, training=True) @ weight

    torch.manual_seed(4)
    plain = torch.autograd.grad(block(x).pow(2).sum(), (x, weight))
    torch.manual_seed(4)
    recomputed = torch.autograd.grad(checkpoint(block, x, use_reentrant=False).pow(2).sum(), (x, weight))
    assert all(torch.allclose(a, b) for a, b in zip(plain, recomputed))


def test_draws_a_quarter_of_what_torch_dropout_draws():
    """The mask consumes one 64-bit draw per four elements: the generator advances accordingly."""
    x = torch.ones(4000)
    torch.manual_seed(5)
    dropout(x, 0.3, training=True)
    after_ours = torch.rand(1)
    torch.manual_seed(5)
    torch.empty(1000, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    assert torch.equal(torch.rand(1), after_ours)
    torch.manual_seed(5)
    F.dropout(x, 0.3, training=True)
    assert not torch.equal(torch.rand(1), after_ours)
