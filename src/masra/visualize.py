"""One PNG per query: the predicted saliency curve(s) over time, the top-k predicted moments with their
scores, the ground truth when known, and optionally a strip of video thumbnails along the time axis. Used by
``masra predict --plots`` (one model), ``masra predict --video`` (with thumbnails) and the demo (the
baseline and MASRA side by side). Uses matplotlib's Agg canvas directly (no pyplot global state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def plot_query(
    out_path: str | Path,
    predictions: dict[str, dict[str, Any]],
    *,
    clip_length: float,
    duration: float | None = None,
    gt_windows: Sequence[Sequence[float]] | None = None,
    gt_saliency: Sequence[float] | None = None,
    top_k: int = 5,
    title: str | None = None,
    thumbnails: Sequence[tuple[float, Any]] = (),
) -> Path:
    """Draw the submission rows of one query (``{model name: row}``, rows with ``pred_relevant_windows`` and
    optional ``pred_saliency_scores``) to ``out_path``. With ``gt_saliency`` (in [0, 1]) every predicted curve
    is min-max scaled to [0, 1] so that they share its axis; otherwise curves are drawn as predicted.
    ``thumbnails``: (time in seconds, RGB image) pairs drawn as a strip under the moments."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    windows = {name: list(row.get("pred_relevant_windows") or [])[:top_k] for name, row in predictions.items()}
    curves = {name: np.asarray(row.get("pred_saliency_scores") or [], dtype=np.float64)
              for name, row in predictions.items()}
    if duration is None:
        duration = max([len(c) * clip_length for c in curves.values()]
                       + [w[1] for found in windows.values() for w in found] + [1.0])
    ratios = [2, 1.4] + ([1.2] if thumbnails else [])
    fig = Figure(figsize=(9, 3.6 + 1.2 * bool(thumbnails)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    curve_ax, span_ax = axes[0], axes[1]

    for st, ed in gt_windows or []:
        for ax in (curve_ax, span_ax):
            ax.axvspan(st, ed, color="tab:green", alpha=0.18, lw=0)
    if gt_windows:
        curve_ax.plot([], [], color="tab:green", alpha=0.4, lw=6, label="ground truth")
    if gt_saliency is not None:
        gt_curve = np.asarray(gt_saliency, dtype=np.float64)
        curve_ax.plot(_centres(gt_curve.size, clip_length), gt_curve, ":", color="tab:green", label="GT saliency")
    span_labels = []
    for i, (name, curve) in enumerate(curves.items()):
        color = f"C{i}"
        if curve.size:
            label = "predicted saliency" if len(predictions) == 1 else f"{name} saliency"
            if gt_saliency is not None:
                spread = curve.max() - curve.min()
                curve = (curve - curve.min()) / spread if spread > 0 else np.zeros_like(curve)
                label += " (min-max)"
            curve_ax.plot(_centres(curve.size, clip_length), curve, color=color, lw=1.5, label=label)
        for rank, (st, ed, score) in enumerate(windows[name]):
            y = len(span_labels) + 1
            span_ax.plot([st, ed], [y, y], color=color, lw=4, solid_capstyle="butt", alpha=0.4 + 0.6 * (rank == 0))
            span_ax.text(ed, y, f" {score:.2f}", va="center", fontsize=7)
            span_labels.append(f"#{rank + 1}" if len(predictions) == 1 else f"{name} #{rank + 1}")
    curve_ax.set_ylabel("saliency")
    curve_ax.set_title(title or "", fontsize=9, loc="left")
    curve_ax.legend(loc="upper right", fontsize=7, frameon=False)
    span_ax.set_yticks(range(1, len(span_labels) + 1), span_labels, fontsize=7)
    span_ax.set_ylim(0.3, len(span_labels) + 0.7)
    span_ax.invert_yaxis()  # best moment on top
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
    """Each image centred on its time, all of one width (duration / count), stretched to the strip's height."""
    width = duration / len(thumbnails)
    for time, image in thumbnails:
        ax.imshow(np.asarray(image), extent=(time - width / 2, time + width / 2, 0, 1), aspect="auto")
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel("frames")


def _centres(n_clips: int, clip_length: float) -> np.ndarray:
    return (np.arange(n_clips) + 0.5) * clip_length


def query_title(row: dict[str, Any]) -> str:
    """``qid | vid | query`` of a submission row, the query cut to 90 characters."""
    query = str(row.get("query", ""))
    if len(query) > 90:
        query = query[:87] + "..."
    return f"qid {row.get('qid')} | {row.get('vid')} | {query}"
