"""``masra ablate``: baseline, each MASRA part alone, all parts, all parts but one, and two controls, over
seeds, on the demo data (either regime) or on any training config (a user's own data).

The protocol (``PROTOCOL_OVERRIDES``, applied before the variant's and the user's overrides, so visible in each
run's config.yaml): an evaluation every epoch, a linear warm-up then a cosine decay to the last epoch, whose
metrics are the table's main column (the best epoch's are a second one). Runs of one seed are paired: the same
data order, baseline initialisation and dropout stream (masra.train), so each variant's per-seed difference to
``baseline`` and to ``all`` isolates the part; the table gives its mean and 95 % t-interval
(``masra.lab.demo.ablation_table``).

Every (variant, seed) run writes ``DIR/runs/{variant}/seed{seed}/result.json`` when it finishes; a rerun skips
those, so an interrupted ablation resumes where it stopped. The table is rebuilt from the result files:
``DIR/ablation.json`` (every run + statistics) and ``DIR/ablation.md`` (with the parts' training diagnostics at
the best epoch: gates, β, attention shares, temperatures, auxiliary losses next to their chance levels;
docs/method.md), and the learning curves from the runs' per-epoch evaluations: ``DIR/curves.{md,json,png}``
(``masra.lab.demo.curves``).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masra.config import (
    MASRA_PARTS,
    Config,
    apply_overrides,
    config_to_dict,
    fill_added_keys,
    load_config,
    set_masra_parts,
    validate_config,
)
from masra.data.jsonl import write_json
from masra.lab.demo.ablation_table import aggregate, markdown_table
from masra.lab.demo.curves import write_curves
from masra.lab.demo.regimes import DEFAULT_REGIME, regime_spec
from masra.lab.demo.synthetic import build_synthetic_dataset
from masra.lab.demo.training import (
    DEFAULT_BACKBONE,
    DEFAULT_EPOCHS,
    Trainer,
    VariantResult,
    demo_config,
    train_many,
    train_variant,
)
from masra.errors import MasraError


@dataclass(frozen=True)
class Variant:
    """One row of the table: the enabled parts and the config overrides that make it what it is."""

    name: str
    parts: tuple[str, ...]
    overrides: tuple[str, ...] = ()


def custom_variant(spec: list[str]) -> Variant:
    """``NAME BASE [KEY=VALUE ...]`` (``masra ablate --variant``) -> a variant named NAME with the parts and
    overrides of the built-in variant BASE plus the given overrides, e.g. ``esta_w025 all loss.esta=0.25``:
    an option measured as a row of the table, paired with every other row on the same seeds."""
    known = {variant.name: variant for variant in VARIANTS}
    if len(spec) < 2:
        raise MasraError(f"needs NAME BASE [KEY=VALUE ...], got {' '.join(spec)!r}", field="variant")
    name, base, *overrides = spec
    if name in known or not name.replace("_", "").isalnum():
        raise MasraError(f"{name!r} must be a new name of letters, digits and _ (built-in: {', '.join(known)})",
                         field="variant")
    if base not in known:
        raise MasraError(f"unknown base variant {base!r}; known: {', '.join(known)}", field="variant")
    apply_overrides(Config(), overrides)  # a bad override fails here, before anything is trained
    return Variant(name, known[base].parts, (*known[base].overrides, *overrides))


# The rows of the table, in order: each part alone (its gain over the baseline) and all parts but one (what
# the others lose without it). The controls separate a part's mechanism from what comes with it: SORA also
# adds an encoder layer (sora_beta0: the layer with β fixed at 0, no relational bias; sora_const_r2: R2 replaced
# by its row mean, which the row-centred bias makes zero: no content-free offset is left), and DAI's gain
# mixes the codebook with the extra supervision of its relevance BCE (dai_norel: that loss's weight 0).
VARIANTS: tuple[Variant, ...] = (
    Variant("baseline", ()),
    *(Variant(name, (name,)) for name in MASRA_PARTS),
    Variant("all", MASRA_PARTS),
    *(Variant(f"all_but_{name}", tuple(p for p in MASRA_PARTS if p != name)) for name in MASRA_PARTS),
    Variant("sora_beta0", ("sora",), ("model.sora.beta_init=0", "model.sora.learnable_beta=false")),
    Variant("sora_const_r2", ("sora",), ("model.sora.relation=row_mean",)),
    Variant("dai_norel", ("dai",), ("loss.dai_relevance=0",)),
)
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
RESULT_FILE = "result.json"
# Applied to every run before the variant's and the user's overrides: an evaluation per epoch (the learning
# curves have every point, the last epoch has its metrics), and a schedule that ends at the last epoch (a 1-epoch
# linear warm-up, then a cosine decay to 0), so the last epoch is a result and not a point on a constant lr.
PROTOCOL_OVERRIDES = ("train.eval_every=1", "train.lr_schedule=cosine", "train.warmup_epochs=1")
log = logging.getLogger(__name__)
# (enabled parts, seed, run folder, overrides) -> the config of one run.
ConfigFactory = Callable[[list[str], int, Path, list[str]], Config]


def train_resuming(name: str, cfg: Any) -> VariantResult:
    """The default trainer: continues a run that an interrupted ablation left unfinished."""
    return train_variant(name, cfg, resume=True)


def run_path(out: Path, variant: str, seed: int) -> Path:
    return out / "runs" / variant / f"seed{seed}"


# Where the generated dataset's files lie: its identity (``data_key``) stands for them, so a run copied into another
# ``--out`` together with the same generated dataset is still the same run.
GENERATED_DATA_PATHS = ("train_path", "eval_path", "test_path", "v_feat_dirs", "t_feat_dir", "prior_dir")


def run_fingerprint(cfg: Config, data_key: dict[str, Any] | None) -> dict[str, Any]:
    """What makes two runs the same run: the config except where it is written and how long it trains,
    and the generated dataset's identity (None for a user's config, whose data paths then count)."""
    values = config_to_dict(cfg)
    values["train"] = {k: v for k, v in values["train"].items() if k not in ("output_dir", "epochs")}
    if data_key is not None:
        values["data"] = {k: v for k, v in values["data"].items() if k not in GENERATED_DATA_PATHS}
    return {"config": values, "data": data_key}


def load_finished(
    out: Path, variant: str, seed: int, epochs: int, fingerprint: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The stored result of a finished run, or None when it is missing or was trained for other epochs (the
    rerun then continues it). A result of another config or dataset is an error, never reused or overwritten."""
    path = run_path(out, variant, seed) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MasraError(f"unreadable result file ({err.msg}); delete it to rerun this run", file=path) from None
    stored = result.get("fingerprint")
    if isinstance(stored, dict) and isinstance(stored.get("config"), dict):
        fill_added_keys(stored["config"])  # a run recorded before a key existed keeps that key's old value
    differ = sorted(_differing_keys(stored, fingerprint)) if fingerprint is not None and stored is not None else []
    if differ:
        raise MasraError(f"holds a finished run of another config or dataset (differs in: {', '.join(differ)}); "
                         "use another --out, or delete this run folder to retrain it", file=path.parent)
    if result.get("epochs") != epochs:
        log.info("%s was trained for %s epochs, not %d: rerunning", path, result.get("epochs"), epochs)
        return None
    if "last" not in result:
        log.info("%s was written before results recorded the last epoch: rerunning", path)
        return None
    return result


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two nested dicts differ. A key that only one side has is not a difference: config
    fields added since a run was recorded keep their old behaviour at their defaults."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [prefix.rstrip(".") or "(value)"] if a != b else []
    keys = sorted(set(a) & set(b))
    return [d for k in keys for d in _differing_keys(a[k], b[k], f"{prefix}{k}.")]


def demo_configs(
    out: Path, *, data: str, data_seed: int, epochs: int, n_train: int | None, n_val: int | None, backbone: str
) -> tuple[ConfigFactory, dict[str, Any]]:
    """Runs on the generated dataset of regime ``data`` (cached in ``out/data``), with the demo's settings on
    ``backbone``."""
    dataset = build_synthetic_dataset(out / "data", data_seed, regime_spec(data), n_train=n_train, n_val=n_val)
    data_key = {k: dataset.manifest[k] for k in ("generator_version", "regime", "seed", "spec", "rows")}

    def make(parts: list[str], seed: int, output_dir: Path, overrides: list[str]) -> Config:
        return demo_config(dataset, parts=parts or "none", seed=seed, epochs=epochs, output_dir=output_dir,
                           overrides=overrides, backbone=backbone)

    return make, data_key


def user_configs(config: str, *, epochs: int) -> ConfigFactory:
    """Runs of a training config (a packaged name or a YAML file): its data and settings, the variant's parts."""
    base = load_config(config)

    def make(parts: list[str], seed: int, output_dir: Path, overrides: list[str]) -> Config:
        cfg = copy.deepcopy(base)
        set_masra_parts(cfg, parts or "none")
        cfg.train.seed, cfg.train.epochs, cfg.train.output_dir = seed, epochs, str(output_dir)
        apply_overrides(cfg, overrides)
        validate_config(cfg)
        return cfg

    return make


def run_ablation(
    out: str | Path,
    *,
    seeds: list[int],
    epochs: int | None = None,
    data_seed: int = 0,
    variants: list[str] | None = None,
    custom: list[Variant] | None = None,
    n_train: int | None = None,
    n_val: int | None = None,
    overrides: list[str] | None = None,
    trainer: Trainer = train_resuming,
    workers: int = 1,
    data: str | None = None,
    config: str | None = None,
    backbone: str = DEFAULT_BACKBONE,
) -> dict[str, Any]:
    """Train every missing (variant, seed) run, then write and return the aggregated table and the curves.

    Without ``config`` all runs share one generated dataset of regime ``data`` (default planted; generated
    with ``data_seed``, ``n_train``/``n_val`` rows); with ``config`` (a packaged name or YAML path) runs use
    that config's data and settings. ``seeds`` vary the training seed; ``epochs`` defaults to the demo's
    budget, or to the config's own ``train.epochs``. ``backbone``: the grounding model of the demo's settings
    (``masra.lab.demo.training.demo_config``; a ``config`` names its own). ``custom`` variants
    (:func:`custom_variant`) are trained after the chosen built-in ones.
    ``trainer`` is the function that trains one config (replaceable in tests); ``workers`` runs train side
    by side in separate processes (results are written once all pending runs have finished; an
    interrupted ablation resumes each run from its last checkpoint).
    """
    out = Path(out)
    known = {variant.name: variant for variant in VARIANTS}
    chosen = list(variants or known)
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise MasraError(f"unknown variant(s) {unknown}; known: {', '.join(known)}", field="variants")
    for variant in custom or []:
        if variant.name in known:
            raise MasraError(f"variant {variant.name!r} is given twice", field="variant")
        known[variant.name] = variant
        chosen.append(variant.name)
    if not seeds or len(set(seeds)) != len(seeds):
        raise MasraError(f"at least one seed is needed, each once (got {seeds})", field="seeds")
    user_overrides = list(overrides or [])
    overrides = [*PROTOCOL_OVERRIDES, *user_overrides]
    apply_overrides(Config(), overrides)  # fail fast on a bad override, before the dataset is built
    if config is not None:
        if data is not None or n_train is not None or n_val is not None:
            raise MasraError("the data of a --config run comes from the config: drop --data/--train-rows/--val-rows",
                             field="config")
        if backbone != DEFAULT_BACKBONE:
            raise MasraError("a --config run trains the config's own model.backbone: drop --backbone (or pass "
                             "--set model.backbone=...)", field="backbone")
        epochs = load_config(config).train.epochs if epochs is None else epochs
        make, data_key, data_name = user_configs(config, epochs=epochs), None, f"config:{config}"
    else:
        data_name = data or DEFAULT_REGIME
        epochs = DEFAULT_EPOCHS if epochs is None else epochs
        make, data_key = demo_configs(out, data=data_name, data_seed=data_seed, epochs=epochs,
                                      n_train=n_train, n_val=n_val, backbone=backbone)

    results: dict[str, dict[int, dict[str, Any]]] = {v: {} for v in chosen}
    pending: list[tuple[str, int, Config]] = []
    for variant in chosen:
        for seed in seeds:
            cfg = make(list(known[variant].parts), seed, run_path(out, variant, seed),
                       [*known[variant].overrides, *overrides])
            split = cfg.data.eval_split_name
            fingerprint = run_fingerprint(cfg, data_key)
            finished = load_finished(out, variant, seed, epochs, fingerprint)
            if finished is not None:
                log.info("skipping %s seed %d (finished)", variant, seed)
                results[variant][seed] = finished
            else:
                pending.append((variant, seed, cfg))
    jobs = [(variant, cfg) for variant, _, cfg in pending]
    log.info("training %d runs (%d side by side)", len(jobs), workers)
    for (variant, seed, cfg), trained in zip(pending, train_many(jobs, trainer, workers)):
        record = {
            "variant": variant,
            "parts": list(known[variant].parts),
            "overrides": list(known[variant].overrides),
            "seed": seed,
            "epochs": epochs,
            "last": {"epoch": trained.last_epoch, "brief": trained.last_brief},
            "best": {"epoch": trained.best_epoch, "brief": trained.brief},
            "wall_s": round(trained.wall_s, 1),
            "diagnostics": trained.diagnostics,
            "fingerprint": run_fingerprint(cfg, data_key),
        }
        write_json(run_path(out, variant, seed) / RESULT_FILE, record)
        results[variant][seed] = record

    source = f"config {config}" if config is not None else f"{data_name} demo data (data seed {data_seed})"
    if backbone != DEFAULT_BACKBONE:
        source += f", {backbone} backbone"
    runs = {variant: [_without_fingerprint(by_seed[s]) for s in seeds] for variant, by_seed in results.items()}
    table = aggregate(runs, seeds=seeds, epochs=epochs, data=data_name, data_seed=data_seed, source=source,
                      protocol=list(PROTOCOL_OVERRIDES), overrides=user_overrides)
    write_json(out / "ablation.json", table)
    (out / "ablation.md").write_text(markdown_table(table))
    write_curves(out, {v: [run_path(out, v, s) for s in seeds] for v in chosen}, split=split,
                 caption=f"{source}, {epochs} epochs, training seeds {', '.join(map(str, seeds))}; mean ± std")
    return table


def _without_fingerprint(record: dict[str, Any]) -> dict[str, Any]:
    """A run as the table lists it: the config fingerprint (with its local paths) stays in the run's result.json."""
    return {k: v for k, v in record.items() if k != "fingerprint"}
