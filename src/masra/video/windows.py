"""Sliding windows over a video longer than a model's trained length (``data.max_v_l`` clips).

A video of L clips is covered by windows of W = max_v_l clips starting every W - overlap clips (default
overlap W // 2), the last window aligned to the end, so every clip is seen by at least one window and
nothing is truncated. Each window is grounded as a video of its own (its own TEF and normalisation, as in
training); its moments are shifted by the window's start time, all windows' moments are merged by greedy
temporal NMS (a moment the dataset's rounding left empty is widened to its clip first), and each clip's
saliency is the mean over the windows that contain it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from masra.errors import MasraError
from masra.model.postprocess import temporal_nms

# Hull IoU above which two moments from overlapping windows count as the same moment.
MERGE_IOU = 0.7


def window_starts(n_clips: int, window: int, overlap: int | None = None) -> list[int]:
    """Start clip of every window (one window [0] when the video fits)."""
    if n_clips <= 0:
        raise MasraError("video has no clips", field="video")
    if window <= 0 or n_clips <= window:
        return [0]
    overlap = window // 2 if overlap is None else overlap
    if not 0 <= overlap < window:
        raise MasraError(f"overlap {overlap} must be in [0, {window})", field="overlap")
    stride = window - overlap
    starts = list(range(0, n_clips - window, stride))
    return starts + [n_clips - window]


def average_saliency(n_clips: int, starts: Sequence[int], saliencies: Sequence[np.ndarray]) -> np.ndarray:
    """[n_clips] mean saliency over the windows covering each clip; window i covers starts[i] + [0, len)."""
    total = np.zeros(n_clips, dtype=np.float64)
    count = np.zeros(n_clips, dtype=np.int64)
    for start, scores in zip(starts, saliencies):
        total[start : start + len(scores)] += scores
        count[start : start + len(scores)] += 1
    if (count == 0).any():
        raise MasraError(f"clip {int(np.argmin(count))} is covered by no window", field="windows")
    return (total / count).astype(np.float32)


def _widened(start: float, end: float, duration: float, clip_length: float) -> tuple[float, float]:
    """A moment the dataset's rounding made empty (QVHighlights rounds to 2 s: [0, 0.4] becomes [0, 0]) as
    the clip it lies in, clipped to the video; a non-empty moment as it is."""
    if end > start:
        return start, end
    n_clips = max(1, math.ceil(duration / clip_length - 1e-9))
    k = min(int(min(start, duration) // clip_length), n_clips - 1)
    return k * clip_length, min((k + 1) * clip_length, duration)


def merge_moments(
    per_window: Sequence[Sequence[Sequence[float]]], offsets: Sequence[float], duration: float,
    *, clip_length: float, threshold: float = MERGE_IOU, top_k: int = 10,
) -> list[tuple[float, float, float]]:
    """Shift each window's [start, end, score] rows by its offset (seconds), clip to [0, duration], widen the
    ones left empty to their clip (so a video shorter than the rounding step still gets moments), NMS."""
    rows = [[*_widened(max(0.0, s + off), min(duration, e + off), duration, clip_length), p]
            for rows_i, off in zip(per_window, offsets) for s, e, p in rows_i]
    if len(per_window) > 1:
        rows = temporal_nms(rows, threshold, max_before=len(rows), max_after=top_k)
    rows = sorted(rows, key=lambda row: row[2], reverse=True)[:top_k]
    return [(float(s), float(e), float(p)) for s, e, p in rows]
