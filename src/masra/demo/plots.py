"""The demo's PNGs: a metric comparison chart and a few per-query plots (saliency curve + windows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from masra.data.jsonl import read_jsonl
from masra.demo.training import KEY_METRICS, VariantResult

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


def plot_query(path: Path, gt: dict[str, Any], predictions: dict[str, dict[str, Any]], clip_length: float = 2.0) -> None:
    """One query: each model's saliency curve and top-1 window, the GT windows shaded, GT saliency dotted."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3))
    n_clips = int(float(gt["duration"]) / clip_length)
    times = (np.arange(n_clips) + 0.5) * clip_length
    for k, (st, ed) in enumerate(gt["relevant_windows"]):
        ax.axvspan(st, ed, color="tab:green", alpha=0.15, label="ground truth" if k == 0 else None)
    gt_saliency = np.zeros(n_clips)
    for clip, scores in zip(gt["relevant_clip_ids"], gt["saliency_scores"]):
        if clip < n_clips:
            gt_saliency[clip] = np.mean(scores) / 4.0
    ax.plot(times, gt_saliency, ":", color="tab:green", label="GT saliency (mean / 4)")
    for i, (name, row) in enumerate(predictions.items()):
        color = f"C{i}"
        saliency = np.asarray(row["pred_saliency_scores"][:n_clips], dtype=np.float64)
        spread = saliency.max() - saliency.min()
        scaled = (saliency - saliency.min()) / spread if spread > 0 else np.zeros_like(saliency)
        ax.plot(times[: len(scaled)], scaled, color=color, label=f"{name} saliency (min-max)")
        st, ed, score = row["pred_relevant_windows"][0]
        ax.hlines(1.05 + 0.07 * i, st, ed, color=color, linewidth=4, label=f"{name} top-1 ({score:.2f})")
    ax.set_xlim(0, float(gt["duration"]))
    ax.set_ylim(-0.05, 1.2 + 0.07 * len(predictions))
    ax.set_xlabel("time (s)")
    ax.set_title(f"qid {gt['qid']}: {gt['query']}", fontsize=9)
    ax.legend(fontsize=6, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
        plot_query(path, gt, {name: rows[gt["qid"]] for name, rows in by_model.items()})
        written.append(path)
    return written
