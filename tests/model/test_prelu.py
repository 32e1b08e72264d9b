"""masra.model.prelu: the same PReLU as torch's, with a cheaper CPU backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masra.model.prelu import PReLU, _SingleSlopePReLU


def _grads(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.clone().requires_grad_()
    out = module(x)
    grad_x, grad_w = torch.autograd.grad(out, (x, module.weight), grad)
    return out.detach(), grad_x, grad_w


def test_forward_and_gradients_equal_torchs_prelu() -> None:
    torch.manual_seed(0)
    ours, theirs = PReLU(), nn.PReLU()
    with torch.no_grad():
        ours.weight.fill_(0.3)
        theirs.weight.fill_(0.3)
    x = torch.randn(4, 7, 33)
    x[0, 0, :5] = 0.0  # the kink: torch's PReLU passes the slope's gradient there
    grad = torch.randn(4, 7, 33)
    out, grad_x, grad_w = _grads(ours, x, grad)
    ref_out, ref_grad_x, ref_grad_w = _grads(theirs, x, grad)
    assert torch.equal(out, ref_out)
    assert torch.equal(grad_x, ref_grad_x)
    torch.testing.assert_close(grad_w, ref_grad_w, rtol=1e-5, atol=1e-6)


def test_the_slope_gradient_passes_gradcheck() -> None:
    x = torch.randn(3, 5, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_SingleSlopePReLU.apply, (x, weight))


def test_non_contiguous_gradients_are_handled() -> None:
    ours = PReLU()
    x = torch.randn(6, 5, 8).transpose(0, 1)  # [5, 6, 8], strided
    grad = torch.randn(6, 5, 8).transpose(0, 1)
    _, grad_x, grad_w = _grads(ours, x, grad)
    _, ref_grad_x, ref_grad_w = _grads(nn.PReLU(), x, grad)
    assert torch.equal(grad_x, ref_grad_x)
    torch.testing.assert_close(grad_w, ref_grad_w, rtol=1e-5, atol=1e-6)


def test_bf16_activations_with_a_float32_slope_match_torchs_prelu() -> None:
    """Under bf16 autocast the FFN's activations are bf16 and the slope float32."""
    torch.manual_seed(0)
    ours, theirs = PReLU(), nn.PReLU()
    x = torch.randn(4, 9, 64).to(torch.bfloat16)
    grad = torch.randn(4, 9, 64).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, grad_x, grad_w = _grads(ours, x, grad)
        ref_out, ref_grad_x, ref_grad_w = _grads(theirs, x, grad)
    assert out.dtype == torch.bfloat16 and grad_w.dtype == torch.float32
    assert torch.equal(out, ref_out)
    assert torch.equal(grad_x, ref_grad_x)
    torch.testing.assert_close(grad_w, ref_grad_w, rtol=2e-2, atol=1e-2)


@pytest.mark.parametrize("case", ["per_channel", "float16", "no_grad"])
def test_other_cases_take_torchs_prelu(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One slope per channel, another dtype, or no gradient: F.prelu, never the custom backward."""
    called = []
    monkeypatch.setattr(_SingleSlopePReLU, "apply", lambda *args: called.append(args))
    module = PReLU(num_parameters=8) if case == "per_channel" else PReLU()
    x = torch.randn(2, 8, 3)  # channels second, as nn.PReLU reads them
    if case == "float16":
        module, x = module.to(torch.float16), x.to(torch.float16)
    with torch.set_grad_enabled(case != "no_grad"):
        out = module(x)
    assert torch.equal(out, torch.nn.functional.prelu(x, module.weight))
    assert called == []


def test_state_dict_is_torchs() -> None:
    """Checkpoints written with nn.PReLU load into PReLU and back."""
    theirs = nn.PReLU()
    ours = PReLU()
    ours.load_state_dict(theirs.state_dict())
    assert list(ours.state_dict()) == ["weight"]
