"""Hungarian matching between predicted spans and ground-truth windows (one call per decoder layer)."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from masra.model.span_ops import generalized_temporal_iou, span_cxw_to_xx


class HungarianMatcher(nn.Module):
    """Cost = span·L1(cx, w) + giou·(−GIoU) + label·(−p_fg), built for the whole batch and split per sample.

    Every target gets exactly one prediction; the remaining queries are background.
    """

    def __init__(self, cost_span: float = 10.0, cost_giou: float = 1.0, cost_label: float = 4.0) -> None:
        super().__init__()
        self.cost_span = cost_span
        self.cost_giou = cost_giou
        self.cost_label = cost_label

    @torch.no_grad()
    def forward(
        self, pred_logits: torch.Tensor, pred_spans: torch.Tensor, targets: list[torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """pred_logits [B, Q, 2], pred_spans [B, Q, 2] (cx, w), targets: B tensors [n_i, 2] (cx, w).

        Returns B pairs (query_idx [k_i], target_idx [k_i]) of int64 CPU tensors, k_i = min(Q, n_i).
        """
        batch, n_query = pred_spans.shape[:2]
        sizes = [len(t) for t in targets]
        if sum(sizes) == 0:
            empty = torch.empty(0, dtype=torch.int64)
            return [(empty, empty) for _ in range(batch)]
        prob_fg = pred_logits.float().flatten(0, 1).softmax(-1)[:, 0:1]  # [B*Q, 1]
        spans = pred_spans.float().flatten(0, 1)  # [B*Q, 2]
        tgt = torch.cat(targets).to(spans)  # [T, 2]
        cost = (
            self.cost_span * torch.cdist(spans, tgt, p=1)
            - self.cost_giou * generalized_temporal_iou(span_cxw_to_xx(spans), span_cxw_to_xx(tgt))
            - self.cost_label * prob_fg
        )  # [B*Q, T]
        cost = cost.view(batch, n_query, -1).cpu()
        indices = []
        for i, block in enumerate(cost.split(sizes, dim=-1)):
            rows, cols = linear_sum_assignment(block[i].numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices
