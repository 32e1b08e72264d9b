"""``masra demo``: synthetic dataset → train the baseline and/or MASRA → official metrics, predictions, plots.

Layout of ``--out DIR``::

    DIR/data/                    the generated dataset (cache, reused while version/seed/spec match)
    DIR/runs/{baseline,masra}/   training runs (checkpoints, logs, TensorBoard)
    DIR/metrics.json             official evaluator output of the MASRA model (best epoch on val)
    DIR/baseline_metrics.json    the same for the baseline (with --compare-baseline)
    DIR/predictions.jsonl        MASRA's val predictions (official submission layout)
    DIR/baseline_predictions.jsonl
    DIR/summary.json             key metrics, chance level, wall times, dataset statistics
    DIR/plots/*.png              metric comparison and per-query saliency/window plots
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from masra.config import MASRA_PARTS, Config, apply_overrides, parse_masra_parts
from masra.data.jsonl import read_jsonl, write_json
from masra.lab.demo.chance import chance_metrics
from masra.lab.demo.progress import ProgressPrinter
from masra.lab.demo.regimes import DEFAULT_REGIME, regime_spec
from masra.lab.demo.synthetic import SyntheticDataset, build_synthetic_dataset
from masra.lab.demo.training import (
    DEFAULT_BACKBONE,
    DEFAULT_EPOCHS,
    KEY_METRICS,
    VariantResult,
    default_workers,
    demo_config,
    train_many,
    train_variant,
)
from masra.errors import MasraError

RESULT_FILES = (
    "metrics.json",
    "baseline_metrics.json",
    "predictions.jsonl",
    "baseline_predictions.jsonl",
    "summary.json",
    "plots",
)


@dataclass
class DemoReport:
    out: Path
    dataset: SyntheticDataset
    variants: list[VariantResult]  # baseline first when trained, MASRA last
    chance: dict[str, Any]  # official metrics of a random predictor on the same val rows
    data_s: float
    total_s: float


def _refuse_clobber(out: Path, force: bool) -> None:
    existing = [name for name in RESULT_FILES if (out / name).exists()]
    if not existing:
        return
    if not force:
        raise MasraError(f"result files exist ({', '.join(existing)}); pass --force to replace them", file=out)
    for name in existing:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def run_demo(
    out: str | Path,
    *,
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    parts: str = "all",
    compare_baseline: bool = False,
    force: bool = False,
    n_train: int | None = None,
    n_val: int | None = None,
    overrides: list[str] | None = None,
    progress: bool = False,
    workers: int | None = None,
    epoch_lines: bool = True,
    data: str = DEFAULT_REGIME,
    backbone: str = DEFAULT_BACKBONE,
) -> DemoReport:
    """Run the whole demo into ``out`` and return what it measured (files are written as listed above).

    ``epoch_lines``: print one line per finished epoch of every model (loss, last val metrics, ETA);
    ``progress``: also per-batch progress bars (with one worker); ``data`` names the regime of the generated
    dataset (``masra.lab.demo.regimes``); ``backbone`` the grounding model (``demo_config``)."""
    started = time.time()
    out = Path(out)
    if epochs < 1:
        raise MasraError("must be at least 1", field="epochs")
    part_list = parse_masra_parts(parts)
    spec = regime_spec(data)
    apply_overrides(Config(), list(overrides or []))  # fail fast on a bad override, before the dataset is built
    _refuse_clobber(out, force)
    out.mkdir(parents=True, exist_ok=True)

    dataset = build_synthetic_dataset(out / "data", seed, spec, n_train=n_train, n_val=n_val)
    data_s = time.time() - started
    val_rows = read_jsonl(dataset.val_path)

    plan: list[tuple[str, list[str]]] = []
    if compare_baseline and part_list:
        plan.append(("baseline", []))
    plan.append(("masra" if part_list else "baseline", part_list))
    jobs = []
    for name, enabled in plan:
        cfg = demo_config(dataset, parts=enabled or "none", seed=seed, epochs=epochs, output_dir=out / "runs" / name,
                          overrides=overrides, backbone=backbone)
        print(f"training {name} ({','.join(enabled) or 'no MASRA parts'}) for {cfg.train.epochs} epochs", flush=True)
        jobs.append((name, cfg))
    workers = default_workers() if workers is None else workers
    trainer = partial(train_variant, progress=progress and workers == 1)
    variants = list(train_many(jobs, trainer, workers, report=ProgressPrinter() if epoch_lines else None))

    final = variants[-1]
    write_json(out / "metrics.json", final.metrics)
    shutil.copyfile(final.predictions, out / "predictions.jsonl")
    baseline = next((v for v in variants if v.name == "baseline"), None)
    if compare_baseline and baseline is not None:
        write_json(out / "baseline_metrics.json", baseline.metrics)
        shutil.copyfile(baseline.predictions, out / "baseline_predictions.jsonl")

    chance = chance_metrics(val_rows, seed)
    from masra.lab.demo.plots import write_demo_plots

    write_demo_plots(out / "plots", variants, chance, val_rows)
    report = DemoReport(out, dataset, variants, chance, data_s, time.time() - started)
    write_json(out / "summary.json", summary(report, seed=seed, epochs=epochs))
    return report


def summary(report: DemoReport, *, seed: int, epochs: int) -> dict[str, Any]:
    """The machine-readable digest of a demo run (key metrics per variant, chance level, timings)."""

    def keys(brief: dict[str, Any]) -> dict[str, Any]:
        return {k: brief.get(k) for k in KEY_METRICS}

    return {
        "seed": seed,
        "epochs": epochs,
        "dataset": {"root": str(report.dataset.root), "regime": report.dataset.manifest["regime"],
                    **report.dataset.manifest["stats"]},
        "chance": keys(report.chance["brief"]),
        "variants": [
            {
                "name": v.name,
                "parts": v.parts,
                "best_epoch": v.best_epoch,
                "train_wall_s": round(v.wall_s, 1),
                "metrics": keys(v.brief),
            }
            for v in report.variants
        ],
        "data_wall_s": round(report.data_s, 1),
        "total_wall_s": round(report.total_s, 1),
    }


SHORT_NAMES = {
    "MR-full-mAP": "MR mAP",
    "MR-full-R1@0.5": "R1@0.5",
    "MR-full-R1@0.7": "R1@0.7",
    "HL-min-VeryGood-mAP": "HL mAP",
    "HL-min-VeryGood-Hit1": "HL Hit1",
}


def print_report(report: DemoReport) -> None:
    """A short rich table: chance, baseline, MASRA; key metrics and training wall time."""
    from rich.console import Console
    from rich.table import Table

    n_val = len(read_jsonl(report.dataset.val_path))
    regime = report.dataset.manifest["regime"]
    table = Table(title=f"masra demo: synthetic QVHighlights val ({n_val} queries, {regime} regime)",
                  caption="HL = highlight detection at the Very Good level")
    table.add_column("model", overflow="fold")
    for key in KEY_METRICS:
        table.add_column(SHORT_NAMES.get(key, key), justify="right")
    table.add_column("train", justify="right")
    table.add_row("random (chance)", *[f"{report.chance['brief'][k]:.2f}" for k in KEY_METRICS], "-")
    for v in report.variants:
        label = v.name if not v.parts else f"{v.name} ({'all parts' if len(v.parts) == len(MASRA_PARTS) else '+'.join(v.parts)})"
        table.add_row(label, *[f"{v.brief[k]:.2f}" for k in KEY_METRICS], f"{v.wall_s:.0f} s")
    console = Console()
    console.print(table)
    console.print(f"total wall time {report.total_s:.0f} s (dataset {report.data_s:.0f} s); results in {report.out}")
