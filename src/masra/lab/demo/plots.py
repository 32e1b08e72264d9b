"""The demo's PNGs: a metric comparison chart and a few per-query plots (``masra.visualize.plot_query``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from masra.config import QVH_CLIP_LENGTH
from masra.data.jsonl import read_jsonl
from masra.lab.demo.training import KEY_METRICS, VariantResult
from masra.visualize import plot_query

N_QUERY_PLOTS = 4


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metric_comparison(path: Path, variants: list[VariantResult], chance: dict[str, Any]) -> None:
    """Grouped bars of the key metrics: chance, then every trained variant."""
    plt = _pyplot()
    names = ["chance"] + [v.name for v in variants]
    values = [[chance["brief"][k] for k in KEY_METRICS]] + [[v.brief[k] for k in KEY_METRICS] for v in variants]
    x = np.arange(len(KEY_METRICS))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, (name, vals) in enumerate(zip(names, values)):
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, vals, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, [k.replace("HL-min-VeryGood", "HL-VG") for k in KEY_METRICS], fontsize=8)
    ax.set_ylabel("score (%)")
    ax.set_title("Synthetic QVHighlights val: official metrics")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def gt_saliency(gt: dict[str, Any], clip_length: float) -> np.ndarray:
    """Per-clip QVHighlights saliency of an annotation row: the mean annotator score / 4, 0 outside."""
    n_clips = int(float(gt["duration"]) / clip_length)
    saliency = np.zeros(n_clips)
    for clip, scores in zip(gt["relevant_clip_ids"], gt["saliency_scores"]):
        if clip < n_clips:
            saliency[clip] = np.mean(scores) / 4.0
    return saliency


def write_demo_plots(
    folder: Path, variants: list[VariantResult], chance: dict[str, Any], val_rows: list[dict[str, Any]]
) -> list[Path]:
    """metrics.png plus query_{qid}.png for the first few val queries; returns the written paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "metrics.png"]
    plot_metric_comparison(written[0], variants, chance)
    by_model = {v.name: {row["qid"]: row for row in read_jsonl(v.predictions)} for v in variants}
    for gt in val_rows[:N_QUERY_PLOTS]:
        path = folder / f"query_{gt['qid']}.png"
        plot_query(path, {name: rows[gt["qid"]] for name, rows in by_model.items()}, clip_length=QVH_CLIP_LENGTH,
                   duration=float(gt["duration"]), gt_windows=gt["relevant_windows"],
                   gt_saliency=gt_saliency(gt, QVH_CLIP_LENGTH), top_k=1, title=f"qid {gt['qid']}: {gt['query']}")
        written.append(path)
    return written
