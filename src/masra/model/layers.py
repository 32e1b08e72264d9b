"""Small building blocks shared by the encoders, the decoder and the heads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from masra.errors import MasraError
from masra.model.dropout import Dropout
from masra.model.prelu import PReLU

ACTIVATIONS = ("relu", "gelu", "prelu")
# Training inputs with more rows than this (batch x sequence length: 2 x 8 videos of 2,048 clips and more,
# with the negative pairs) run each layer under activation checkpointing: only the layer inputs are kept and
# each layer is recomputed in backward (same random dropout masks, so the same function). Below it everything
# is kept for backward: with 2^16 rows, one MASRA step at batch 8 and 4,000 clips peaked at 10.6 GiB, with
# 2^15 at 5.0 GiB (docs/benchmarks.md, "Long videos"). QVHighlights batches (2 x 32 x 76 rows) stay far below it.
CHECKPOINT_MIN_ROWS = 2**15


def make_activation(name: str) -> nn.Module:
    """The FFN non-linearity by name; QD-DETR uses a PReLU (one learned slope per layer)."""
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    if name == "prelu":
        return PReLU()
    raise MasraError(f"unknown activation {name!r}; one of {', '.join(ACTIVATIONS)}", field="model.activation")


class MLP(nn.Module):
    """num_layers Linear layers with ReLU in between (none after the last)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class InputProjection(nn.Sequential):
    """n blocks of LayerNorm -> Dropout -> Linear (-> ReLU on all but the last block), Moment-DETR's LinearLayer stack."""

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int, dropout: float) -> None:
        if not 1 <= num_layers <= 3:
            raise MasraError(f"must be 1, 2 or 3, got {num_layers}", field="model.n_input_proj")
        blocks: list[nn.Module] = []
        for i in range(num_layers):
            in_dim = input_dim if i == 0 else hidden_dim
            block: list[nn.Module] = [nn.LayerNorm(in_dim), Dropout(dropout), nn.Linear(in_dim, hidden_dim)]
            if i < num_layers - 1:
                block.append(nn.ReLU())
            blocks.append(nn.Sequential(*block))
        super().__init__(*blocks)


class FeedForward(nn.Module):
    """Post-norm FFN sub-layer: LayerNorm(residual + Dropout(W2 Dropout(act(W1 x)))), residual = x by default."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = make_activation(activation)
        self.dropout = Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout_out = Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        update = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.norm((x if residual is None else residual) + self.dropout_out(update))


def in_float32(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor) -> torch.Tensor:
    """``fn(*tensors)`` on float32 copies with autocast off; on float32 inputs outside autocast, plain ``fn``.

    The heads whose outputs rank clips and moments (saliency scores, class logits, spans) run through it: under
    bf16 autocast they would come out with bf16's 8-bit mantissa, so close clips' saliency scores would tie and
    the highlight ranking would suffer (docs/training.md, "bf16").
    """
    with torch.autocast(tensors[0].device.type, enabled=False):
        return fn(*(tensor.float() for tensor in tensors))


def run_layer(layer: Callable[..., Any], x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """``layer(x, *args, **kwargs)``, checkpointed when training on more than CHECKPOINT_MIN_ROWS rows."""
    rows = x.shape[0] * x.shape[1]
    if torch.is_grad_enabled() and rows > CHECKPOINT_MIN_ROWS:
        return checkpoint(layer, x, *args, use_reentrant=False, **kwargs)
    return layer(x, *args, **kwargs)
