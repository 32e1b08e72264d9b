"""Train one variant (baseline or a set of MASRA parts) on the synthetic dataset; shared by demo and ablation."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masra.config import (
    Config,
    apply_overrides,
    backbone_layers,
    load_config,
    packaged_configs,
    set_masra_parts,
    validate_config,
)
from masra.lab.demo.synthetic import SyntheticDataset
from masra.errors import MasraError

if TYPE_CHECKING:
    from masra.train.trainer import EpochReport

# Sized so the whole demo (dataset + baseline and MASRA side by side) fits in 3 minutes on 2 quiet CPU cores:
# MASRA's moment retrieval leaves chance level at epoch 3-4 with the settings of demo_config (docs/demo.md).
DEFAULT_EPOCHS = 5
# The metrics the demo table and the ablation table report (keys of the evaluator's "brief" section).
KEY_METRICS = ("MR-full-mAP", "MR-full-R1@0.5", "MR-full-R1@0.7", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1")
# The packaged config behind the demo (masra/configs/demo.yaml).
DEMO_CONFIG = "demo"
# The demo's backbone: the config's default (QD-DETR), the one demo.yaml is written for (no layer file of its own).
DEFAULT_BACKBONE = Config().model.backbone


def demo_backbones() -> list[str]:
    """The backbones the demo and the ablation train: QD-DETR, then each shipped backbone layer."""
    return [DEFAULT_BACKBONE, *backbone_layers()]


@dataclass
class VariantResult:
    name: str
    parts: list[str]
    run_dir: Path
    best_epoch: int | None
    metrics: dict[str, Any]  # the evaluator's full output (official layout) at the best epoch
    predictions: Path  # submission JSONL of the best epoch
    wall_s: float
    diagnostics: dict[str, float] = field(default_factory=dict)  # the parts' training diagnostics, best epoch
    last_epoch: int | None = None  # the run's last epoch, and the evaluator's brief metrics there
    last_brief: dict[str, float] = field(default_factory=dict)

    @property
    def brief(self) -> dict[str, float]:
        return self.metrics["brief"]


def demo_config(
    dataset: SyntheticDataset,
    *,
    parts: list[str] | str,
    seed: int,
    epochs: int,
    output_dir: Path,
    overrides: list[str] | None = None,
    backbone: str = DEFAULT_BACKBONE,
) -> Config:
    """The demo's training config: the packaged ``demo`` config (settings and why: ``masra config show demo
    --file``) on ``dataset``, with the given parts, seed, epochs and run folder; another ``backbone`` than
    QD-DETR merges that backbone's shipped layer (``configs/backbones/<name>.yaml``: its model and losses, the
    demo's widths and training settings kept); ``overrides`` (``key.sub=value``) apply last."""
    files = [packaged_configs()[DEMO_CONFIG]]  # by path: a file named demo in the cwd is not it
    if backbone != DEFAULT_BACKBONE:
        layers = backbone_layers()
        if backbone not in layers:
            raise MasraError(f"unknown backbone {backbone!r}; one of {', '.join(demo_backbones())}", field="backbone")
        files.append(layers[backbone])
    cfg = load_config(files)
    cfg.data.train_path = str(dataset.train_path)
    cfg.data.eval_path = str(dataset.val_path)
    cfg.data.v_feat_dirs = [str(folder) for folder in dataset.video_dirs]
    cfg.data.t_feat_dir = str(dataset.text_dir)
    cfg.data.prior_dir = str(dataset.prior_dir)
    cfg.data.clip_length = float(dataset.manifest["clip_length"])
    cfg.train.seed = seed
    cfg.train.epochs = epochs
    cfg.train.eval_every = max(1, min(5, epochs // 4))
    cfg.train.output_dir = str(output_dir)
    set_masra_parts(cfg, parts)
    apply_overrides(cfg, overrides or [])
    validate_config(cfg)
    return cfg


def enabled_parts(cfg: Config) -> list[str]:
    from masra.config import MASRA_PARTS

    return [name for name in MASRA_PARTS if getattr(cfg.model, name).enabled]


def train_variant(
    name: str, cfg: Config, *, resume: bool = False, progress: bool = False, report: Reporter | None = None
) -> VariantResult:
    """Train ``cfg`` into ``cfg.train.output_dir``: from scratch (previous run artifacts replaced), or with
    ``resume`` continuing the run left there by an interrupted invocation. ``report(name, epoch_report)``
    is called after every epoch."""
    from masra.checkpoint import read_checkpoint_info
    from masra.lab.demo.diagnostics import read_diagnostics
    from masra.train.trainer import train

    started = time.time()
    on_epoch = None if report is None else partial(report, name)
    result = train(cfg, resume="auto" if resume else None, force=not resume, progress=progress, on_epoch=on_epoch)
    wall = time.time() - started
    if result.best_metrics is None or result.best_checkpoint is None:
        raise MasraError("training finished without an evaluation; check data.eval_path", file=result.run_dir)
    predictions = result.best_checkpoint / f"{cfg.data.eval_split_name}_preds.jsonl"
    if not predictions.is_file():
        raise MasraError("best checkpoint has no predictions file", file=predictions)
    _, _, last = read_checkpoint_info(result.run_dir / "last")
    if not last.get("metrics"):  # the trainer evaluates the last epoch of every run that has an eval split
        raise MasraError("the last epoch was not evaluated", file=result.run_dir / "last")
    return VariantResult(
        name=name,
        parts=enabled_parts(cfg),
        run_dir=result.run_dir,
        best_epoch=result.best_epoch,
        metrics=result.best_metrics,
        predictions=predictions,
        wall_s=wall,
        diagnostics=read_diagnostics(result.run_dir, result.best_epoch),
        last_epoch=last["epoch"],
        last_brief=last["metrics"],
    )


Trainer = Callable[..., VariantResult]  # (name, cfg[, report=Reporter]) -> VariantResult
Reporter = Callable[[str, "EpochReport"], None]  # (variant name, what its last epoch did)


def default_workers() -> int:
    """Runs trained side by side: one per core, at most 2 (small models scale badly over threads)."""
    return max(1, min(2, os.cpu_count() or 1))


def exit_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Pool initializer: a daemon thread ends this worker as soon as its parent process is gone. Without it, a
    killed ``masra demo``/``masra ablate`` leaves its workers training the jobs already queued to them, into
    run folders that a rerun of the command would then train at the same time."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _train_single_threaded(trainer: Trainer, name: str, cfg: Config, threads: int, events: Any) -> VariantResult:
    import torch

    torch.set_num_threads(threads)
    if events is None:
        return trainer(name, cfg)
    return trainer(name, cfg, report=lambda variant, epoch: events.put((variant, epoch)))


def train_many(
    jobs: list[tuple[str, Config]], trainer: Trainer, workers: int, report: Reporter | None = None
) -> Iterator[VariantResult]:
    """Train every (name, config) job, in ``workers`` processes side by side (each with its share of the
    cores), or in this process when ``workers`` is 1. Results are yielded in job order, each as soon as it and
    the jobs before it have finished (so a caller can record every finished run before the last one ends).
    ``report`` (called in this process) receives every job's per-epoch progress."""
    if workers <= 1 or len(jobs) <= 1:
        for name, cfg in jobs:
            yield trainer(name, cfg) if report is None else trainer(name, cfg, report=report)
        return
    from masra.lab.demo.progress import QueueListener

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    with contextlib.ExitStack() as stack:
        events = None
        if report is not None:
            events = stack.enter_context(context.Manager()).Queue()
            stack.enter_context(QueueListener(events, report))
        pool = stack.enter_context(ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context,
                                                       initializer=exit_with_parent, initargs=(os.getpid(),)))
        futures = [pool.submit(_train_single_threaded, trainer, name, cfg, threads, events) for name, cfg in jobs]
        for future in futures:
            yield future.result()
