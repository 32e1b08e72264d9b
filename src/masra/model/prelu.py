"""PReLU with a cheaper backward on CPU.

PyTorch's CPU backward of a single-slope PReLU (``_prelu_kernel_backward``) writes the weight's gradient per
element into a second input-sized tensor before summing it. Here the input's gradient is
``leaky_relu_backward`` at the current slope and the slope's gradient one dot product Σ g·min(x, 0), several
times cheaper on a QD-DETR-sized FFN activation ([64, 76, 1024]) on a 2-core CPU. Same
forward, bit for bit; the input's gradient is the same, the slope's is summed in another order (float32
rounding). Under bf16 autocast (bf16 activations, float32 slope) the slope's gradient sums bf16 products in
float32. Elsewhere (other devices, other dtypes, one slope per channel, no gradient) ``F.prelu`` is used.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


FAST_DTYPES = (torch.float32, torch.bfloat16)  # bf16: the activations of a bf16 autocast forward


class _SingleSlopePReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.prelu(x, weight)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        negative = x.clamp(max=0).reshape(-1)
        if grad.dtype == torch.float32:
            grad_weight = torch.dot(grad.view(-1), negative)
        else:  # bf16 under autocast: bf16 products, summed in float32
            grad_weight = torch.mul(grad.view(-1), negative).sum(dtype=torch.float32)
        grad_x = torch.ops.aten.leaky_relu_backward(grad, x, float(weight), False)
        return grad_x, grad_weight.reshape(weight.shape).to(weight.dtype)


class PReLU(nn.PReLU):
    """``nn.PReLU`` (same parameter, same state dict) whose single-slope CPU float32 / bf16 backward is cheaper."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = (
            torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.dtype in FAST_DTYPES
            and self.weight.dtype == torch.float32
            and self.weight.numel() == 1
            and not torch.compiler.is_compiling()
        )
        return _SingleSlopePReLU.apply(x, self.weight) if fast else F.prelu(x, self.weight)
