"""QVHighlights highlight-detection metrics: per-annotator tie-grouped AP (HL-mAP) and HIT@1.

All queries are scored at once on padded arrays; docs/evaluation.md states the protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np

from masra.datasets import QVH_CLIP_LENGTH  # hard-coded by the reference evaluator
from masra.eval.padding import pad_ragged

# (name, minimum annotator score of a positive clip)
SALIENCY_LEVELS = (("Fair", 2), ("Good", 3), ("VeryGood", 4))


def saliency_matrices(
    durations: Sequence[float],
    relevant_clip_ids: Sequence[Sequence[int]],
    saliency_scores: Sequence[Sequence[Sequence[float]]],
) -> tuple[np.ndarray, np.ndarray]:
    """GT annotator scores of every clip of every query -> scores [Q, N, 3] (zeros outside the relevant
    clips and beyond a video's end) and num_clips [Q] = int(duration / 2).
    """
    num_clips = np.array([int(d / QVH_CLIP_LENGTH) for d in durations], dtype=np.int64)
    counts = np.array([len(ids) for ids in relevant_clip_ids], dtype=np.int64)
    full = np.zeros((len(num_clips), int(num_clips.max(initial=0)), 3))
    rows = np.repeat(np.arange(len(num_clips)), counts)
    cols = np.fromiter(chain.from_iterable(relevant_clip_ids), dtype=np.int64, count=int(counts.sum()))
    values = np.fromiter(chain.from_iterable(chain.from_iterable(saliency_scores)), dtype=np.float64, count=3 * int(counts.sum()))
    full[rows, cols] = values.reshape(-1, 3)
    return full, num_clips


def _fit_to_clips(pred_scores: Sequence[Sequence[float]], num_clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut or zero-pad each prediction to its query's clip count -> scores [Q, N] (-inf beyond), valid [Q, N]."""
    width = int(num_clips.max(initial=0))
    padded, given = pad_ragged(pred_scores)  # [Q, P]
    scores = np.zeros((len(pred_scores), width))
    cols = min(width, padded.shape[1])
    scores[:, :cols] = np.where(given[:, :cols], padded[:, :cols], 0.0)
    valid = np.arange(width)[None, :] < num_clips[:, None]
    return np.where(valid, scores, -np.inf), valid


def tie_grouped_average_precision(scores: np.ndarray, labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The reference ``get_ap`` for every query and label column at once -> [Q, A].

    scores [Q, N] (padding -inf), labels [Q, N, A] in {0, 1}, valid [Q, N].
    A column with no positive scores 0 and one with only positives scores 1. Otherwise: one
    precision/recall point per DISTINCT score (tied clips form one threshold), precision interpolated
    as the max over lower thresholds, and AP = plain mean of the interpolated precision at the first
    threshold of each recall level (= each tie group that contains a positive).
    """
    num_q, width = scores.shape
    if width == 0:
        return np.zeros((num_q, labels.shape[-1]))
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)  # [Q, N] descending
    y = np.take_along_axis(labels * valid[..., None], order[..., None], axis=1)  # [Q, N, A]
    ok = np.take_along_axis(valid, order, axis=1)

    pos = np.arange(width)
    next_s = np.concatenate([s[:, 1:], np.full((num_q, 1), -np.inf)], axis=1)
    prev_s = np.concatenate([np.full((num_q, 1), np.inf), s[:, :-1]], axis=1)
    group_end = ok & (s != next_s)  # [Q, N]
    group_start = ok & (s != prev_s)
    start_idx = np.maximum.accumulate(np.where(group_start, pos[None, :], 0), axis=1)  # [Q, N]

    tps = np.cumsum(y, axis=1)  # [Q, N, A]
    tps_before = np.where(
        (start_idx > 0)[..., None],
        np.take_along_axis(tps, np.maximum(start_idx - 1, 0)[..., None], axis=1),
        0.0,
    )
    precision = np.where(group_end[..., None], tps / (pos + 1.0)[None, :, None], -np.inf)
    interpolated = np.flip(np.maximum.accumulate(np.flip(precision, 1), axis=1), 1)
    new_level = group_end[..., None] & (tps > tps_before)  # a tie group holding a positive
    levels = new_level.sum(axis=1)  # [Q, A]
    total = np.where(new_level, interpolated, 0.0).sum(axis=1)
    # No positive -> no level -> 0; only positives -> every level has precision 1 -> 1.
    return np.divide(total, levels, out=np.zeros_like(total), where=levels > 0)


def top_clip(pred_scores: Sequence[Sequence[float]]) -> np.ndarray:
    """Index of each query's highest predicted score over the whole list (first on ties) -> [Q]."""
    padded, given = pad_ragged(pred_scores)
    if padded.shape[1] == 0:
        return np.zeros(len(pred_scores), dtype=np.int64)
    return np.argmax(np.where(given, padded, -np.inf), axis=1)


def hit_at_one(top: np.ndarray, binary: np.ndarray, num_clips: np.ndarray) -> np.ndarray:
    """1 where the top clip is positive for at least one annotator, else 0 -> [Q].

    top [Q] from ``top_clip``; binary [Q, N, A] labels; a top clip beyond the video's clip count is a miss.
    """
    inside = top < num_clips
    row = binary[np.arange(len(top)), np.minimum(top, max(binary.shape[1] - 1, 0))]  # [Q, A]
    return np.where(inside, row.max(axis=1, initial=0.0), 0.0)


def highlight_metrics(
    pred_scores: Sequence[Sequence[float]], gt: np.ndarray, num_clips: np.ndarray
) -> dict[str, dict[str, np.ndarray]]:
    """Per saliency level: {"ap": [Q, 3] per query and annotator, "hit1": [Q]} (fractions, unrounded).

    gt [Q, N, 3] annotator scores and num_clips [Q] as returned by ``saliency_matrices``.
    """
    scores, valid = _fit_to_clips(pred_scores, num_clips)  # [Q, N]
    top = top_clip(pred_scores)
    minimums = np.array([m for _, m in SALIENCY_LEVELS], dtype=np.float64)
    binary = (gt[..., None, :] >= minimums[:, None]).astype(np.float64)  # [Q, N, levels, 3]
    num_q, width = scores.shape
    # One sort serves all levels and annotators: fold them into the label-column axis.
    ap = tie_grouped_average_precision(scores, binary.reshape(num_q, width, -1), valid).reshape(num_q, len(minimums), 3)
    return {
        name: {"ap": ap[:, i], "hit1": hit_at_one(top, binary[:, :, i], num_clips)}
        for i, (name, _) in enumerate(SALIENCY_LEVELS)
    }
