"""One PNG per query: the predicted saliency curve over time, the top-k predicted moments with their scores,
the ground-truth moments when known, and optionally a strip of video thumbnails along the time axis.
Uses matplotlib's Agg canvas directly (no pyplot global state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def plot_prediction(
    row: dict[str, Any],
    out_path: str | Path,
    *,
    clip_length: float,
    duration: float | None = None,
    gt_windows: Sequence[Sequence[float]] | None = None,
    top_k: int = 5,
    thumbnails: Sequence[tuple[float, Any]] = (),
) -> Path:
    """Draw one submission row (``pred_relevant_windows``, optional ``pred_saliency_scores``) to ``out_path``;
    ``thumbnails``: (time in seconds, RGB image) pairs drawn as a strip under the moments."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    windows = list(row.get("pred_relevant_windows") or [])[:top_k]
    saliency = np.asarray(row.get("pred_saliency_scores") or [], dtype=np.float64)
    if duration is None:
        duration = max([len(saliency) * clip_length] + [w[1] for w in windows] + [1.0])
    ratios = [2, 1.4] + ([1.2] if thumbnails else [])
    fig = Figure(figsize=(9, 3.6 + 1.2 * bool(thumbnails)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    curve_ax, span_ax = axes[0], axes[1]

    if saliency.size:
        centres = (np.arange(saliency.size) + 0.5) * clip_length
        curve_ax.plot(centres, saliency, color="tab:blue", lw=1.5, label="predicted saliency")
    for st, ed in gt_windows or []:
        for ax in (curve_ax, span_ax):
            ax.axvspan(st, ed, color="tab:green", alpha=0.18, lw=0)
    curve_ax.set_ylabel("saliency")
    curve_ax.set_title(_title(row), fontsize=9, loc="left")
    if gt_windows:
        curve_ax.plot([], [], color="tab:green", alpha=0.4, lw=6, label="ground truth")
    curve_ax.legend(loc="upper right", fontsize=7, frameon=False)

    for rank, (st, ed, score) in enumerate(windows):
        y = len(windows) - rank
        span_ax.plot([st, ed], [y, y], color="tab:red", lw=4, solid_capstyle="butt", alpha=0.4 + 0.6 * (rank == 0))
        span_ax.text(ed, y, f" {score:.2f}", va="center", fontsize=7)
    span_ax.set_yticks(range(1, len(windows) + 1), [f"#{len(windows) - i}" for i in range(len(windows))], fontsize=7)
    span_ax.set_ylim(0.3, len(windows) + 0.7)
    span_ax.set_ylabel("top moments")
    if thumbnails:
        _draw_thumbnails(axes[2], thumbnails, duration)
    span_ax.set_xlim(0, duration)  # after any thumbnails, whose extents would widen the shared axis
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    return out_path


def _draw_thumbnails(ax: Any, thumbnails: Sequence[tuple[float, Any]], duration: float) -> None:
    """Each image centred on its time, all of one width (duration / count), aspect kept by the axis box."""
    width = duration / len(thumbnails)
    for time, image in thumbnails:
        ax.imshow(np.asarray(image), extent=(time - width / 2, time + width / 2, 0, 1), aspect="auto")
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel("frames")


def _title(row: dict[str, Any]) -> str:
    query = str(row.get("query", ""))
    if len(query) > 90:
        query = query[:87] + "..."
    return f"qid {row.get('qid')} | {row.get('vid')} | {query}"
