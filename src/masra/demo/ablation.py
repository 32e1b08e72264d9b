"""``masra ablate``: baseline, each MASRA part alone, and all parts, over several seeds, on the demo data.

Every (variant, seed) run writes ``DIR/runs/{variant}/seed{seed}/result.json`` when it finishes; a rerun skips
those, so an interrupted ablation resumes where it stopped. The table is rebuilt from the result files:
``DIR/ablation.json`` (every run + mean/std) and ``DIR/ablation.md`` (mean ± std of the key metrics).
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

from masra.config import MASRA_PARTS, Config, apply_overrides
from masra.data.jsonl import write_json
from masra.demo.synthetic import SyntheticDataset, build_synthetic_dataset
from masra.demo.training import DEFAULT_EPOCHS, KEY_METRICS, Trainer, VariantResult, demo_config, train_many, train_variant
from masra.errors import MasraError

# (variant name, enabled parts): the rows of the table, in order.
VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("baseline", ()),
    *((name, (name,)) for name in MASRA_PARTS),
    ("all", MASRA_PARTS),
)
RESULT_FILE = "result.json"
log = logging.getLogger(__name__)



def train_resuming(name: str, cfg: Any) -> VariantResult:
    """The default trainer: continues a run that an interrupted ablation left unfinished."""
    return train_variant(name, cfg, resume=True)


def run_path(out: Path, variant: str, seed: int) -> Path:
    return out / "runs" / variant / f"seed{seed}"


def load_finished(out: Path, variant: str, seed: int, epochs: int) -> dict[str, Any] | None:
    """The stored result of a finished run, or None when it is missing or was trained for other epochs."""
    path = run_path(out, variant, seed) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MasraError(f"unreadable result file ({err.msg}); delete it to rerun this run", file=path) from None
    if result.get("epochs") != epochs:
        log.info("%s was trained for %s epochs, not %d: rerunning", path, result.get("epochs"), epochs)
        return None
    return result


def run_ablation(
    out: str | Path,
    *,
    seeds: list[int],
    epochs: int = DEFAULT_EPOCHS,
    data_seed: int = 0,
    variants: list[str] | None = None,
    n_train: int | None = None,
    n_val: int | None = None,
    overrides: list[str] | None = None,
    trainer: Trainer = train_resuming,
    workers: int = 1,
) -> dict[str, Any]:
    """Train every missing (variant, seed) run, then write and return the aggregated table.

    All runs share one dataset (generated with ``data_seed``); ``seeds`` vary the training seed.
    ``trainer`` is the function that trains one config (replaceable in tests); ``workers`` runs train side
    by side in separate processes (results are written once all pending runs have finished; an
    interrupted ablation resumes each run from its last checkpoint).
    """
    out = Path(out)
    known = dict(VARIANTS)
    chosen = variants or list(known)
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise MasraError(f"unknown variant(s) {unknown}; known: {', '.join(known)}", field="variants")
    if not seeds:
        raise MasraError("at least one seed is needed", field="seeds")
    apply_overrides(Config(), list(overrides or []))  # fail fast on a bad override, before the dataset is built
    dataset: SyntheticDataset = build_synthetic_dataset(out / "data", data_seed, n_train=n_train, n_val=n_val)

    results: dict[str, dict[int, dict[str, Any]]] = {v: {} for v in chosen}
    pending: list[tuple[str, int]] = []
    for variant in chosen:
        for seed in seeds:
            finished = load_finished(out, variant, seed, epochs)
            if finished is not None:
                log.info("skipping %s seed %d (finished)", variant, seed)
                results[variant][seed] = finished
            else:
                pending.append((variant, seed))
    jobs = [
        (variant, demo_config(dataset, parts=list(known[variant]) or "none", seed=seed, epochs=epochs,
                              output_dir=run_path(out, variant, seed), overrides=overrides))
        for variant, seed in pending
    ]
    log.info("training %d runs (%d side by side)", len(jobs), workers)
    for (variant, seed), trained in zip(pending, train_many(jobs, trainer, workers)):
        record = {
            "variant": variant,
            "parts": list(known[variant]),
            "seed": seed,
            "epochs": epochs,
            "best_epoch": trained.best_epoch,
            "wall_s": round(trained.wall_s, 1),
            "brief": trained.brief,
        }
        write_json(run_path(out, variant, seed) / RESULT_FILE, record)
        results[variant][seed] = record

    table = aggregate(results, seeds=seeds, epochs=epochs, data_seed=data_seed)
    write_json(out / "ablation.json", table)
    (out / "ablation.md").write_text(markdown_table(table))
    return table


def aggregate(
    results: dict[str, dict[int, dict[str, Any]]], *, seeds: list[int], epochs: int, data_seed: int
) -> dict[str, Any]:
    """Mean and sample standard deviation (0 for one seed) of every key metric per variant."""
    rows = []
    for variant, by_seed in results.items():
        runs = [by_seed[s] for s in seeds]
        stats = {}
        for key in KEY_METRICS:
            values = [float(r["brief"][key]) for r in runs]
            stats[key] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
        rows.append({"variant": variant, "parts": runs[0]["parts"], "metrics": stats, "runs": runs})
    return {"metrics": list(KEY_METRICS), "seeds": seeds, "epochs": epochs, "data_seed": data_seed, "variants": rows}


def markdown_table(table: dict[str, Any]) -> str:
    """The ablation as a markdown table: one row per variant, ``mean ± std`` over the seeds."""
    seeds = ", ".join(str(s) for s in table["seeds"])
    header = "| variant | " + " | ".join(table["metrics"]) + " |"
    caption = (
        f"Synthetic demo data (data seed {table['data_seed']}), {table['epochs']} epochs, "
        f"training seeds {seeds}; mean ± std over seeds."
    )
    lines = [
        caption,
        "",
        header,
        "|---|" + "---:|" * len(table["metrics"]),
    ]
    for row in table["variants"]:
        cells = [f"{row['metrics'][k]['mean']:.2f} ± {row['metrics'][k]['std']:.2f}" for k in table["metrics"]]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
