"""Learning curves of an ablation: per-epoch validation metrics, mean ± std over seeds, as a table and a plot.

Read from the run folders, not from memory: every evaluation of a training run leaves
``RUN/eval/epoch_{epoch:04d}_{split}_metrics.json`` (the evaluator's output), so curves can be rebuilt for
finished, resumed and interrupted runs alike. A resumed run that re-evaluated an epoch has one file per
epoch (the later write replaced the earlier one).
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from masra.data.jsonl import write_json
from masra.errors import MasraError

# The metrics the curves follow, when the dataset's evaluation produces them.
CURVE_METRICS = ("MR-full-mAP", "HL-min-VeryGood-mAP")
_EVAL_FILE = re.compile(r"epoch_(\d+)_(.+)_metrics\.json")

Curve = list[dict[str, Any]]  # [{"epoch": e, "mean": m, "std": s, "seeds": n}, ...] in epoch order


def read_run_curve(run_dir: str | Path, split: str) -> dict[int, dict[str, float]]:
    """epoch (1-based) -> the evaluator's brief metrics of that epoch, for every evaluation the run left."""
    folder = Path(run_dir) / "eval"
    curve: dict[int, dict[str, float]] = {}
    if not folder.is_dir():
        return curve
    for path in sorted(folder.glob(f"epoch_*_{split}_metrics.json")):
        match = _EVAL_FILE.fullmatch(path.name)
        if match is None or match.group(2) != split:
            continue
        try:
            brief = json.loads(path.read_text())["brief"]
        except (json.JSONDecodeError, KeyError) as err:
            raise MasraError(f"unreadable evaluation file ({err}); delete it or rerun the run", file=path) from None
        curve[int(match.group(1))] = {k: float(v) for k, v in brief.items() if isinstance(v, (int, float))}
    return curve


def mean_curves(runs: list[dict[int, dict[str, float]]], metrics: tuple[str, ...] = CURVE_METRICS) -> dict[str, Curve]:
    """Per metric, mean and sample std (0 for one run) over ``runs`` at every epoch that all of them evaluated."""
    if not runs:
        return {}
    epochs = sorted(set.intersection(*(set(run) for run in runs)))
    out: dict[str, Curve] = {}
    for metric in metrics:
        points = []
        for epoch in epochs:
            values = [run[epoch][metric] for run in runs if metric in run[epoch]]
            if len(values) != len(runs):
                continue
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            points.append({"epoch": epoch, "mean": statistics.fmean(values), "std": std, "seeds": len(values)})
        if points:
            out[metric] = points
    return out


def curves_markdown(curves: dict[str, dict[str, Curve]], caption: str) -> str:
    """One table per metric: a row per epoch, a column per variant, ``mean ± std``."""
    lines = [caption, ""]
    variants = list(curves)
    metrics = [m for m in CURVE_METRICS if any(m in c for c in curves.values())]
    for metric in metrics:
        by_epoch: dict[int, dict[str, str]] = {}
        for variant in variants:
            for point in curves[variant].get(metric, []):
                by_epoch.setdefault(point["epoch"], {})[variant] = f"{point['mean']:.2f} ± {point['std']:.2f}"
        lines += [f"**{metric}** (val, per epoch)", "", "| epoch | " + " | ".join(variants) + " |",
                  "|---:|" + "---:|" * len(variants)]
        for epoch in sorted(by_epoch):
            lines.append(f"| {epoch} | " + " | ".join(by_epoch[epoch].get(v, "-") for v in variants) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_curves(path: Path, curves: dict[str, dict[str, Curve]], title: str) -> None:
    """One panel per metric, a line per variant (mean over seeds) with a ±std band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metrics = [m for m in CURVE_METRICS if any(m in c for c in curves.values())]
    if not metrics:
        return
    fig = Figure(figsize=(5 * len(metrics), 3.8))
    FigureCanvasAgg(fig)
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        for variant, by_metric in curves.items():
            points = by_metric.get(metric, [])
            if not points:
                continue
            x = [p["epoch"] for p in points]
            mean = [p["mean"] for p in points]
            ax.plot(x, mean, marker="o", markersize=3, label=variant)
            ax.fill_between(x, [m - p["std"] for m, p in zip(mean, points)],
                            [m + p["std"] for m, p in zip(mean, points)], alpha=0.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"val {metric} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def write_curves(out: Path, run_dirs: dict[str, list[Path]], *, split: str, caption: str) -> dict[str, dict[str, Curve]]:
    """Curves of every variant over its runs (``run_dirs``: variant -> one run folder per seed), written as
    ``out/curves.json``, ``out/curves.md`` and ``out/curves.png``; returned as variant -> metric -> curve."""
    curves = {variant: mean_curves([read_run_curve(d, split) for d in dirs]) for variant, dirs in run_dirs.items()}
    write_json(out / "curves.json", {"split": split, "caption": caption, "curves": curves})
    (out / "curves.md").write_text(curves_markdown(curves, caption))
    plot_curves(out / "curves.png", curves, caption)
    return curves
