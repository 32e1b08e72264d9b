"""Temporal IoU of [start, end] windows, in the two flavours the official evaluator uses."""

from __future__ import annotations

import numpy as np


def cross_iou(spans1: np.ndarray, spans2: np.ndarray) -> np.ndarray:
    """IoU with the true union |a| + |b| - inter, for every pair of the last-but-one axes.

    spans1: [..., N, 2], spans2: [..., M, 2] (leading axes broadcast) -> [..., N, M].
    A pair with zero union (two identical zero-length windows) gets IoU 0.
    """
    left = np.maximum(spans1[..., :, None, 0], spans2[..., None, :, 0])
    right = np.minimum(spans1[..., :, None, 1], spans2[..., None, :, 1])
    inter = np.clip(right - left, 0.0, None)
    len1 = spans1[..., :, 1] - spans1[..., :, 0]
    len2 = spans2[..., :, 1] - spans2[..., :, 0]
    union = len1[..., :, None] + len2[..., None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def hull_iou(spans1: np.ndarray, spans2: np.ndarray) -> np.ndarray:
    """Paired IoU with the hull max(end) - min(start) as denominator ([N, 2], [N, 2] -> [N]).

    This is what the official R1 uses: it equals the true IoU whenever the windows overlap and is 0
    otherwise (also 0 when the hull is empty).
    """
    inter = np.clip(np.minimum(spans1[:, 1], spans2[:, 1]) - np.maximum(spans1[:, 0], spans2[:, 0]), 0.0, None)
    hull = np.maximum(spans1[:, 1], spans2[:, 1]) - np.minimum(spans1[:, 0], spans2[:, 0])
    return np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)
