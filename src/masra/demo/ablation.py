"""``masra ablate``: baseline, each MASRA part alone, all parts and two controls, over seeds, on the demo data.

Every (variant, seed) run writes ``DIR/runs/{variant}/seed{seed}/result.json`` when it finishes; a rerun skips
those, so an interrupted ablation resumes where it stopped. The table is rebuilt from the result files:
``DIR/ablation.json`` (every run + mean/std) and ``DIR/ablation.md`` (mean ± std of the key metrics, and of
the parts' training diagnostics at the best epoch: gates, β, attention shares, temperatures, auxiliary
losses next to their chance levels; docs/method.md).
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masra.config import MASRA_PARTS, Config, apply_overrides
from masra.data.jsonl import write_json
from masra.demo.diagnostics import read_diagnostics
from masra.demo.synthetic import SyntheticDataset, build_synthetic_dataset
from masra.demo.training import DEFAULT_EPOCHS, KEY_METRICS, Trainer, VariantResult, demo_config, train_many, train_variant
from masra.errors import MasraError



@dataclass(frozen=True)
class Variant:
    """One row of the table: the enabled parts and the config overrides that make it what it is."""

    name: str
    parts: tuple[str, ...]
    overrides: tuple[str, ...] = ()


# The rows of the table, in order. The two controls separate a part's mechanism from what comes with it:
# SORA also adds an encoder layer (sora_beta0: the layer with β fixed at 0, no relational bias), and DAI's
# gain mixes the codebook with the extra supervision of its relevance BCE (dai_norel: that loss's weight 0).
VARIANTS: tuple[Variant, ...] = (
    Variant("baseline", ()),
    *(Variant(name, (name,)) for name in MASRA_PARTS),
    Variant("all", MASRA_PARTS),
    Variant("sora_beta0", ("sora",), ("model.sora.beta_init=0", "model.sora.learnable_beta=false")),
    Variant("dai_norel", ("dai",), ("loss.dai_relevance=0",)),
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
    if "diagnostics" not in result:  # written before results recorded them: read them from the run's log
        result["diagnostics"] = read_diagnostics(path.parent, result.get("best_epoch"))
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
    known = {variant.name: variant for variant in VARIANTS}
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
        (variant, demo_config(dataset, parts=list(known[variant].parts) or "none", seed=seed, epochs=epochs,
                              output_dir=run_path(out, variant, seed),
                              overrides=[*known[variant].overrides, *(overrides or [])]))
        for variant, seed in pending
    ]
    log.info("training %d runs (%d side by side)", len(jobs), workers)
    for (variant, seed), trained in zip(pending, train_many(jobs, trainer, workers)):
        record = {
            "variant": variant,
            "parts": list(known[variant].parts),
            "overrides": list(known[variant].overrides),
            "seed": seed,
            "epochs": epochs,
            "best_epoch": trained.best_epoch,
            "wall_s": round(trained.wall_s, 1),
            "brief": trained.brief,
            "diagnostics": trained.diagnostics,
        }
        write_json(run_path(out, variant, seed) / RESULT_FILE, record)
        results[variant][seed] = record

    table = aggregate(results, seeds=seeds, epochs=epochs, data_seed=data_seed)
    write_json(out / "ablation.json", table)
    (out / "ablation.md").write_text(markdown_table(table))
    return table


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def aggregate(
    results: dict[str, dict[int, dict[str, Any]]], *, seeds: list[int], epochs: int, data_seed: int
) -> dict[str, Any]:
    """Mean and sample standard deviation (0 for one seed) of every key metric per variant, and of every
    diagnostic that all its runs recorded."""
    rows = []
    for variant, by_seed in results.items():
        runs = [by_seed[s] for s in seeds]
        stats = {key: _mean_std([float(r["brief"][key]) for r in runs]) for key in KEY_METRICS}
        names = sorted(set.intersection(*(set(r.get("diagnostics", {})) for r in runs)))
        diagnostics = {name: _mean_std([float(r["diagnostics"][name]) for r in runs]) for name in names}
        rows.append({"variant": variant, "parts": runs[0]["parts"], "metrics": stats, "diagnostics": diagnostics,
                     "runs": runs})
    return {"metrics": list(KEY_METRICS), "seeds": seeds, "epochs": epochs, "data_seed": data_seed, "variants": rows}


def markdown_table(table: dict[str, Any]) -> str:
    """The ablation as markdown: one row per variant, ``mean ± std`` over the seeds; then the diagnostics."""
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
