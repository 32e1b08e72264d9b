"""Hungarian matching between predicted spans and ground-truth windows, for every decoder layer at once."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from masra.model.span_ops import generalized_temporal_iou, span_cxw_to_xx

Indices = list[tuple[torch.Tensor, torch.Tensor]]


def pad_targets(targets: list[torch.Tensor]) -> torch.Tensor:
    """B tensors [n_i, 2] -> [B, max n_i, 2], zero-padded (only the first n_i columns of a row are used)."""
    return nn.utils.rnn.pad_sequence(list(targets), batch_first=True) if targets else torch.zeros(0, 0, 2)


class HungarianMatcher(nn.Module):
    """Cost = span·L1(cx, w) + giou·(−GIoU) + label·(−p_fg) between a sample's predictions and its targets.

    Every target gets exactly one prediction; the remaining queries are background.
    """

    def __init__(self, cost_span: float = 10.0, cost_giou: float = 1.0, cost_label: float = 4.0) -> None:
        super().__init__()
        self.cost_span = cost_span
        self.cost_giou = cost_giou
        self.cost_label = cost_label

    @torch.no_grad()
    def cost_matrices(self, pred_logits: torch.Tensor, pred_spans: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """pred_logits [..., B, Q, 2], pred_spans [..., B, Q, 2], targets [B, T, 2] (padded) -> cost [..., B, Q, T]."""
        prob_fg = pred_logits.float().softmax(-1)[..., 0:1]  # [..., B, Q, 1]
        spans = pred_spans.float()
        tgt = targets.to(spans)
        l1 = (spans[..., :, None, :] - tgt[..., None, :, :]).abs().sum(-1)  # [..., B, Q, T]
        giou = generalized_temporal_iou(span_cxw_to_xx(spans), span_cxw_to_xx(tgt))  # [..., B, Q, T]
        return self.cost_span * l1 - self.cost_giou * giou - self.cost_label * prob_fg

    @torch.no_grad()
    def match_layers(
        self, pred_logits: torch.Tensor, pred_spans: torch.Tensor, targets: list[torch.Tensor]
    ) -> list[Indices]:
        """pred_logits, pred_spans [layers, B, Q, 2]; targets: B tensors [n_i, 2] (cx, w).

        One cost computation and one host transfer for all layers; returns per layer B pairs
        (query_idx [k_i], target_idx [k_i]) of int64 CPU tensors, k_i = min(Q, n_i).
        """
        sizes = [len(t) for t in targets]
        empty = torch.empty(0, dtype=torch.int64)
        if sum(sizes) == 0:
            return [[(empty, empty) for _ in sizes] for _ in range(len(pred_spans))]
        cost = self.cost_matrices(pred_logits, pred_spans, pad_targets(targets)).cpu().numpy()  # [l, B, Q, T]
        layers = []
        for layer_cost in cost:
            indices = []
            for sample_cost, size in zip(layer_cost, sizes):
                rows, cols = linear_sum_assignment(sample_cost[:, :size])
                indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
            layers.append(indices)
        return layers

    def forward(self, pred_logits: torch.Tensor, pred_spans: torch.Tensor, targets: list[torch.Tensor]) -> Indices:
        """One decoder layer: pred_logits [B, Q, 2], pred_spans [B, Q, 2] (cx, w), targets: B tensors [n_i, 2]."""
        return self.match_layers(pred_logits[None], pred_spans[None], targets)[0]
