"""1-D span geometry: format conversion, IoU and generalised IoU (the temporal analogue of DETR's box_ops).

Spans are either (center, width) "cxw" or (start, end) "xx", in the last dimension of a tensor.
"""

from __future__ import annotations

import torch


def span_cxw_to_xx(spans: torch.Tensor) -> torch.Tensor:
    """[..., 2] (center, width) -> [..., 2] (start, end)."""
    center, width = spans.unbind(-1)
    return torch.stack([center - 0.5 * width, center + 0.5 * width], dim=-1)


def span_xx_to_cxw(spans: torch.Tensor) -> torch.Tensor:
    """[..., 2] (start, end) -> [..., 2] (center, width)."""
    start, end = spans.unbind(-1)
    return torch.stack([(start + end) * 0.5, end - start], dim=-1)


def temporal_iou(spans1: torch.Tensor, spans2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise IoU and union of xx spans: spans1 [..., N, 2], spans2 [..., M, 2] -> (iou, union) [..., N, M]
    (leading dimensions broadcast: one call covers a whole batch of cost matrices)."""
    length1 = spans1[..., 1] - spans1[..., 0]  # [..., N]
    length2 = spans2[..., 1] - spans2[..., 0]  # [..., M]
    left = torch.max(spans1[..., :, None, 0], spans2[..., None, :, 0])  # [..., N, M]
    right = torch.min(spans1[..., :, None, 1], spans2[..., None, :, 1])  # [..., N, M]
    inter = (right - left).clamp(min=0)
    union = length1[..., :, None] + length2[..., None, :] - inter
    return inter / union, union


def generalized_temporal_iou(spans1: torch.Tensor, spans2: torch.Tensor) -> torch.Tensor:
    """Pairwise GIoU = IoU - (hull - union) / hull of xx spans: [..., N, 2], [..., M, 2] -> [..., N, M].

    Computed in float32 so that bf16 model outputs do not lose the small differences the matcher ranks.
    """
    spans1 = spans1.float()
    spans2 = spans2.float()
    iou, union = temporal_iou(spans1, spans2)
    left = torch.min(spans1[..., :, None, 0], spans2[..., None, :, 0])
    right = torch.max(spans1[..., :, None, 1], spans2[..., None, :, 1])
    hull = (right - left).clamp(min=0)
    return iou - (hull - union) / hull


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """logit(x) with x clamped to [eps, 1 - eps] first, as DAB-DETR / QD-DETR do for anchors."""
    x = x.clamp(min=eps, max=1 - eps)
    return torch.log(x / (1 - x))
