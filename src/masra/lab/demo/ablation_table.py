"""The ablation table: its JSON (``ablation.json``, written by ``masra ablate`` and read by ``masra results``),
the statistics in it, and its markdown.

Per variant, over the training seeds: mean and sample std of every key metric at the last epoch (the main
column: the protocol's schedule ends there) and at the best epoch (chosen on the same val split, so optimistic);
and, for the paired metrics, the mean paired difference to ``baseline`` and to ``all`` with a 95 % t-interval.
Runs of one seed are paired (same data order, same initial baseline weights, same dropout stream: masra.train),
so the per-seed differences remove what the seeds share.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from masra.errors import MasraError
from masra.lab.demo.training import KEY_METRICS

FORMAT_VERSION = 2
# The metrics whose paired differences the table reports (the README's headline metrics).
PAIRED_METRICS = ("MR-full-mAP", "HL-min-VeryGood-mAP")
# The variants every other one is compared with, seed by seed.
REFERENCES = ("baseline", "all")
CONFIDENCE = 0.95
COLUMNS = ("last", "best")  # the epoch each column reads: the run's last, or its best by val train.best_metric


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def paired_interval(differences: list[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean of per-seed differences and its two-sided t-interval (Student's t, n - 1 degrees of freedom);
    ``low``/``high`` are None for one seed (no spread to estimate)."""
    from scipy import stats

    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return {"mean": mean, "low": None, "high": None, "n": n}
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def aggregate(
    runs: dict[str, list[dict[str, Any]]], *, seeds: list[int], epochs: int, data: str, data_seed: int, source: str,
    protocol: list[str], overrides: list[str],
) -> dict[str, Any]:
    """The table of ``runs`` (variant -> its run records, one per seed in ``seeds`` order; each record with
    ``last``/``best`` = {"epoch", "brief"}, ``parts``, ``overrides``, ``diagnostics``). ``data``: the demo
    regime, or ``config:NAME``; ``source``: the same in words."""
    rows = []
    for variant, records in runs.items():
        columns = {col: {k: mean_std([float(r[col]["brief"][k]) for r in records]) for k in KEY_METRICS}
                   for col in COLUMNS}
        paired = {
            ref: {k: paired_interval([float(r["last"]["brief"][k]) - float(o["last"]["brief"][k])
                                      for r, o in zip(records, runs[ref])]) for k in PAIRED_METRICS}
            for ref in REFERENCES if ref in runs and ref != variant
        }
        names = sorted(set.intersection(*(set(r.get("diagnostics", {})) for r in records)))
        diagnostics = {name: mean_std([float(r["diagnostics"][name]) for r in records]) for name in names}
        rows.append({"variant": variant, "parts": records[0]["parts"], "overrides": records[0]["overrides"],
                     **columns, "paired": paired, "diagnostics": diagnostics, "runs": records})
    return {"format_version": FORMAT_VERSION, "metrics": list(KEY_METRICS), "paired_metrics": list(PAIRED_METRICS),
            "confidence": CONFIDENCE, "data": data, "source": source, "seeds": seeds, "epochs": epochs, "data_seed": data_seed,
            "protocol": protocol, "overrides": overrides, "variants": rows}


def read_table(path: Path) -> dict[str, Any]:
    """An ``ablation.json`` of this format, checked for what the renderers read."""
    try:
        table = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MasraError("no such ablation table", file=path) from None
    except json.JSONDecodeError as err:
        raise MasraError(f"invalid JSON: {err.msg}", file=path, line=err.lineno) from None
    if not isinstance(table, dict) or table.get("format_version") != FORMAT_VERSION:
        version = table.get("format_version") if isinstance(table, dict) else None
        raise MasraError(f"not an ablation table of format {FORMAT_VERSION} (found {version!r}); rerun masra ablate "
                         "on its folder to rewrite it", file=path, field="format_version")
    for key in ("metrics", "paired_metrics", "data", "source", "seeds", "epochs", "protocol", "variants"):
        if key not in table:
            raise MasraError("missing key", file=path, field=key)
    for i, row in enumerate(table["variants"]):
        for key in ("variant", *COLUMNS, "paired"):
            if key not in row:
                raise MasraError("missing key", file=path, field=f"variants[{i}].{key}")
    return table


def row_of(table: dict[str, Any], variant: str) -> dict[str, Any] | None:
    return next((row for row in table["variants"] if row["variant"] == variant), None)


def format_interval(value: dict[str, Any]) -> str:
    """``+1.23 [-0.40, +2.86]`` (no interval for one seed)."""
    if value["low"] is None:
        return f"{value['mean']:+.2f}"
    return f"{value['mean']:+.2f} [{value['low']:+.2f}, {value['high']:+.2f}]"


def caption(table: dict[str, Any]) -> str:
    seeds = ", ".join(str(s) for s in table["seeds"])
    source = table["source"]
    protocol = " ".join(table["protocol"]) or "none"
    extra = f"; overrides {' '.join(table['overrides'])}" if table.get("overrides") else ""
    return (f"{source[0].upper()}{source[1:]}, {table['epochs']} epochs, training seeds {seeds} "
            f"(protocol: {protocol}{extra}).")


def markdown_table(table: dict[str, Any]) -> str:
    """The ablation as markdown: the key metrics at the last and the best epoch (mean ± std over seeds), the
    paired differences with their intervals, then the parts' training diagnostics."""
    metrics = table["metrics"]
    lines = [
        caption(table),
        "",
        "Val metrics, mean ± std over seeds: **last** = the last epoch (the main result), best = the epoch with",
        "the best val MR-full-mAP (chosen on the same val split, so optimistic).",
        "",
        "| variant | " + " | ".join(f"{k} {col}" for k in metrics for col in COLUMNS) + " |",
        "|---|" + "---:|" * (len(metrics) * len(COLUMNS)),
    ]
    for row in table["variants"]:
        cells = [f"{row[col][k]['mean']:.2f} ± {row[col][k]['std']:.2f}" for k in metrics for col in COLUMNS]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    pairs = [(ref, k) for ref in REFERENCES for k in table["paired_metrics"]
             if any(ref in row["paired"] for row in table["variants"])]
    if pairs:
        percent = round(100 * table.get("confidence", CONFIDENCE))
        lines += [
            "",
            f"Paired differences at the last epoch: mean over seeds of (variant − reference) on the same seed, with a",
            f"{percent} % t-interval (an interval that excludes 0 resolves the difference at this number of seeds):",
            "",
            "| variant | " + " | ".join(f"Δ {k} vs {ref}" for ref, k in pairs) + " |",
            "|---|" + "---:|" * len(pairs),
        ]
        for row in table["variants"]:
            cells = [format_interval(row["paired"][ref][k]) if ref in row["paired"] else "-" for ref, k in pairs]
            lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    diagnosed = [row for row in table["variants"] if row.get("diagnostics")]
    if diagnosed:
        lines += [
            "",
            "Training diagnostics at the best epoch (epoch means; `diag_*` per part, `*_chance` = the loss of an",
            "uninformative prediction; docs/method.md):",
            "",
            "| variant | diagnostic | mean ± std |",
            "|---|---|---:|",
        ]
        for row in diagnosed:
            for name, value in row["diagnostics"].items():
                lines.append(f"| {row['variant']} | {name} | {value['mean']:.4f} ± {value['std']:.4f} |")
    return "\n".join(lines) + "\n"
