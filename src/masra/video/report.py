"""What ``masra predict --video`` shows and writes: a table of moments (mm:ss), the PNG with thumbnails."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from masra.video.frames import grab_frames
from masra.video.predict import VideoPrediction

THUMBNAILS = 8
THUMBNAIL_SHORT_SIDE = 96


def mm_ss(seconds: float) -> str:
    """``m:ss.s`` for times under an hour, ``h:mm:ss`` beyond (e.g. 75.0 -> '1:15.0')."""
    whole = int(seconds)
    if seconds >= 3600:
        return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return f"{whole // 60}:{seconds - 60 * (whole // 60):04.1f}"


def distinct_windows(windows: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Each (start, end) once, at its best score. Without NMS (QVHighlights' official setting) a checkpoint
    can return the same window rounded to clips several times; a person needs to see it only once (the
    table of ``masra predict --video`` and the web page both show this list)."""
    seen: set[tuple[float, float]] = set()
    kept = []
    for start, end, score in sorted(windows, key=lambda w: w[2], reverse=True):
        if (start, end) not in seen:
            seen.add((start, end))
            kept.append((float(start), float(end), float(score)))
    return kept


def moments_table(pred: VideoPrediction, top_k: int) -> str:
    """A plain-text table of the top distinct moments (rank, start, end, score)."""
    head = f"{pred.vid} ({mm_ss(pred.duration)}, {pred.n_windows} window{'s' * (pred.n_windows > 1)}): {pred.query}"
    lines = [head, f"{'#':>3}  {'start':>8}  {'end':>8}  {'score':>6}"]
    for rank, (start, end, score) in enumerate(distinct_windows(pred.windows)[:top_k], 1):
        lines.append(f"{rank:>3}  {mm_ss(start):>8}  {mm_ss(end):>8}  {score:6.3f}")
    if not pred.windows:
        lines.append("  (no moment)")
    return "\n".join(lines)


def thumbnails(path: str | Path, duration: float, count: int = THUMBNAILS) -> list[tuple[float, np.ndarray]]:
    """``count`` small frames evenly spread over the video: (time, RGB array) pairs."""
    times = [(k + 0.5) * duration / count for k in range(count)]
    images = grab_frames(path, times, short_side=THUMBNAIL_SHORT_SIDE)
    return [(t, np.asarray(img)) for t, img in zip(times, images) if img is not None]


def plot_video_prediction(pred: VideoPrediction, video_path: str | Path, out_path: str | Path, top_k: int = 5) -> Path:
    """The saliency curve, the top moments and a thumbnail strip of the video, as one PNG."""
    from masra.visualize import plot_query, query_title

    row = pred.to_row()
    return plot_query(out_path, {"prediction": row}, clip_length=pred.clip_length, duration=pred.duration,
                      top_k=top_k, title=query_title(row), thumbnails=thumbnails(video_path, pred.duration))
