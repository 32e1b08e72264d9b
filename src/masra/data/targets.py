"""Training targets of one sample (docs/data.md, "Training targets"), as the anchors build them.

Every function takes the video's clip count ``ctx_l`` and, where the anchors sample at random, a numpy
``Generator`` so that targets are reproducible per (seed, epoch, index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TVSUM_LABEL_SCALE = 12.0 / 80.0  # Σ_20 annotators (score − 1) ∈ [0, 80] rescaled to QVH's 0..12 range


@dataclass
class SaliencyTargets:
    pos_idx: np.ndarray  # [2] int64 clip indices of the positive clips
    neg_idx: np.ndarray  # [2] int64 clip indices of the negative clips
    all_labels: np.ndarray  # [ctx_l] float32 per-clip saliency label
    relevant: np.ndarray  # [ctx_l] float32, 1 for clips inside a GT window


def span_targets(
    windows: list[list[float]], ctx_l: int, clip_length: float, max_windows: int, rng: np.random.Generator
) -> np.ndarray:
    """[n, 2] float32 (center, width) of the GT windows normalised by ctx_l * clip_length.

    More than ``max_windows`` windows: a random subset of ``max_windows`` is kept (in random order).
    """
    spans = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    if len(spans) > max_windows:
        spans = spans[rng.permutation(len(spans))[:max_windows]]
    spans = spans / (ctx_l * clip_length)
    center, width = spans.sum(axis=1) / 2, spans[:, 1] - spans[:, 0]
    return np.stack([center, width], axis=1).astype(np.float32)


def window_clip_range(window: list[float], ctx_l: int, clip_length: float) -> tuple[int, int]:
    """Inclusive clip indices of a window: [int(st / cl), max(0, min(int(ed / cl), L) - 1)], start <= end."""
    last = max(0, min(int(window[1] / clip_length), ctx_l) - 1)
    first = min(int(window[0] / clip_length), last)
    return first, last


def relevant_from_windows(windows: list[list[float]], ctx_l: int, clip_length: float) -> np.ndarray:
    relevant = np.zeros(ctx_l, dtype=np.float32)
    for window in windows:
        first, last = window_clip_range(window, ctx_l, clip_length)
        relevant[first : last + 1] = 1.0
    return relevant


def qvh_saliency(
    clip_ids: list[int], scores: list[list[int]], ctx_l: int, rng: np.random.Generator
) -> SaliencyTargets:
    """QVHighlights pairs: [hard, easy] positives and negatives.

    Hard positive / negative = relevant clip with the largest / smallest annotator sum (stable argsort);
    easy positive = random relevant clip, easy negative = random clip outside ``clip_ids`` (the hard pair
    again when every clip is relevant). Indices are clamped to ctx_l − 1.
    """
    ids = np.asarray(clip_ids, dtype=np.int64)
    agg = np.asarray(scores, dtype=np.float32).sum(axis=1)
    order = np.argsort(agg, kind="stable")
    hard_pos, hard_neg = min(ids[order[-1]], ctx_l - 1), min(ids[order[0]], ctx_l - 1)
    outside = np.setdiff1d(np.arange(ctx_l), ids)
    if len(outside):
        easy_pos, easy_neg = min(int(rng.choice(ids)), ctx_l - 1), int(rng.choice(outside))
    else:
        easy_pos, easy_neg = hard_pos, hard_neg
    all_labels = np.zeros(ctx_l, dtype=np.float32)
    relevant = np.zeros(ctx_l, dtype=np.float32)
    inside = ids < ctx_l
    all_labels[ids[inside]] = agg[inside]
    relevant[ids[inside]] = 1.0
    return SaliencyTargets(
        np.array([hard_pos, easy_pos], dtype=np.int64), np.array([hard_neg, easy_neg], dtype=np.int64), all_labels, relevant
    )


def window_saliency(
    windows: list[list[float]], ctx_l: int, clip_length: float, rng: np.random.Generator
) -> SaliencyTargets:
    """Single-window datasets (Charades-STA, TACoS): 2 random clips inside the first window as positives,
    2 random clips outside as negatives (the positives again when fewer than 2 clips are outside)."""
    first, last = window_clip_range(windows[0], ctx_l, clip_length)
    if first != last:
        pos = rng.choice(np.arange(first, last + 1), size=2, replace=False)
    else:
        pos = np.array([first, first])
    outside = np.concatenate([np.arange(0, first), np.arange(last + 1, ctx_l)])
    neg = rng.choice(outside, size=2, replace=False) if len(outside) >= 2 else pos.copy()
    all_labels = np.zeros(ctx_l, dtype=np.float32)
    all_labels[first : last + 1] = 1.0
    return SaliencyTargets(
        pos.astype(np.int64), neg.astype(np.int64), all_labels, relevant_from_windows(windows, ctx_l, clip_length)
    )


def label_saliency(label: list[list[float]], ctx_l: int, dataset: str) -> SaliencyTargets:
    """TVSum / YouTube Highlights: per-clip labels (TVSum Σ(score − 1) × 12/80, YouTube the 0/1 label) and the
    single hardest pair (largest vs smallest label, stable argsort) in both pair slots."""
    matrix = np.asarray(label, dtype=np.float32)[:ctx_l]
    if dataset == "tvsum":
        agg = (matrix - 1.0).sum(axis=1)
        all_labels = agg * TVSUM_LABEL_SCALE
    else:
        agg = matrix[:, 0]
        all_labels = agg.copy()
    order = np.argsort(agg, kind="stable")
    pos, neg = int(order[-1]), int(order[0])
    return SaliencyTargets(
        np.array([pos, pos], dtype=np.int64),
        np.array([neg, neg], dtype=np.int64),
        all_labels.astype(np.float32),
        (all_labels > 0).astype(np.float32),
    )
