"""The training loop: data → model → epochs of train/evaluate, checkpoints, resume, early stop, DDP.

``train(cfg)`` is the whole of ``masra train``; it returns a :class:`TrainResult` so callers (the demo, the
ablation runner, tests) can use the run without reading files.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from masra import checkpoint as ckpt
from masra.config import Config, config_to_dict, save_config
from masra.data.jsonl import write_json, write_jsonl
from masra.data.splits import ground_truth_rows, load_records
from masra.errors import MasraError
from masra.extraction_record import feature_encoder_record
from masra.train.distributed import (
    DistContext,
    barrier,
    broadcast_object,
    cleanup,
    gather_objects,
    init_distributed,
    mean_across_ranks,
    wrap_model,
)
from masra.train.engine import train_one_epoch
from masra.train.init_from import load_initial_weights, refuse_source_in_run_folder
from masra.train.run_dir import holds_only_run_artifacts, last_checkpoint, prepare_new_run
from masra.train.run_log import RunLog
from masra.train.schedule import build_scheduler, restore_scheduler
from masra.train.seeding import capture_rng_state, restore_rng_state, seed_everything, training_stream_seed


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    best_metric: float | None  # value of cfg.train.best_metric at the best evaluation (None: never evaluated)
    best_epoch: int | None  # 1-based epoch of the best evaluation
    best_metrics: dict[str, Any] | None  # full metrics dict of the best evaluation
    stopped_early: bool
    step_losses: list[float] = field(default_factory=list)  # this process's per-step losses, this invocation

    @property
    def best_checkpoint(self) -> Path | None:
        path = self.run_dir / "best"
        return path if path.is_dir() else None


@dataclass
class EpochReport:
    """What ``train(on_epoch=...)`` receives after each epoch (on the main process)."""

    epoch: int  # 1-based, finished
    epochs: int  # planned total
    loss: float  # mean weighted training loss of the epoch
    metrics: dict[str, Any] | None  # the evaluator's "brief" metrics when this epoch evaluated, else None
    seconds: float  # wall time of the epoch (training + evaluation)


@dataclass
class _RunState:
    """Everything besides tensors that a resumed run must continue from."""

    epoch: int = 0  # number of finished epochs
    best_metric: float | None = None
    best_epoch: int | None = None
    evals_since_best: int = 0


def _build_data(cfg: Config, ctx: DistContext):
    from masra.data.dataset import GroundingDataset, collate

    if not cfg.data.train_path:
        raise MasraError("a training annotation file is required", field="data.train_path")
    train_set = GroundingDataset(load_records(cfg.data.train_path, cfg.data), cfg.data, train=True,
                                 seed=cfg.train.seed)
    world = ctx.world_size
    if cfg.train.batch_size % world:
        raise MasraError(f"global batch size must be divisible by the {world} processes", field="train.batch_size")
    sampler = DistributedSampler(train_set, num_replicas=world, rank=ctx.rank, shuffle=True, seed=cfg.train.seed)
    train_loader = DataLoader(
        train_set,
        batch_size=cfg.train.batch_size // world,
        sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
        pin_memory=ctx.device.type == "cuda",
    )
    eval_loader = None
    gt_rows = None
    if cfg.data.eval_path and ctx.is_main:
        eval_records = load_records(cfg.data.eval_path, cfg.data)
        # Evaluation reads no priors (the model never needs them at inference).
        eval_set = GroundingDataset(eval_records, dataclasses.replace(cfg.data, prior_dir=None), train=False)
        eval_loader = DataLoader(eval_set, batch_size=cfg.train.eval_batch_size, shuffle=False, collate_fn=collate,
                                 num_workers=cfg.data.num_workers)
        gt_rows = ground_truth_rows(eval_records)
    return train_set, sampler, train_loader, eval_loader, gt_rows


def _model_dims(train_set: Any) -> ckpt.ModelDims:
    v_dim, t_dim, prior_dim = train_set.feature_dims()
    return ckpt.ModelDims(v_feat_dim=v_dim, t_feat_dim=t_dim, semantic_dim=prior_dim,
                          v_source_dims=_video_source_dims(train_set.features, train_set.records[0].vid))


def _video_source_dims(loader: Any, vid: str) -> list[int]:
    """Width of each video feature source (before TEF), so inference can normalise each source separately."""
    dims = []
    for source in loader.video_sources:
        found = source.read(vid)
        if found is None:  # TVSum's {vid}_rgb.npy + {vid}_opt.npy pair counts as one source
            found_parts = [source.read(f"{vid}_{part}") for part in ("rgb", "opt")]
            dims.append(sum(part[0].shape[1] for part in found_parts if part is not None))
        else:
            dims.append(found[0].shape[1])
    return dims


def _resume_source(cfg: Config, resume: str | Path | None, force: bool, ctx: DistContext) -> Path | None:
    """Which checkpoint to continue from; prepares the run folder for a fresh start otherwise."""
    run_dir = Path(cfg.train.output_dir)
    source: Path | None
    if resume is not None and ctx.is_main:
        for name in ("last", "best"):
            ckpt.remove_swap_leftovers(run_dir / name)
    if resume is None:
        source = None
        if ctx.is_main:
            prepare_new_run(run_dir, force=force)
    elif str(resume) == "auto":
        source = last_checkpoint(run_dir)
        if source is None and ctx.is_main:
            prepare_new_run(run_dir, force=force or holds_only_run_artifacts(run_dir))
    else:
        source = ckpt.find_checkpoint(resume)
        run_dir.mkdir(parents=True, exist_ok=True)
    barrier(ctx)
    return source


def _metric_of(metrics: dict[str, Any], name: str) -> float:
    brief = metrics.get("brief", {})
    if name not in brief:
        raise MasraError(f"metric not produced by this dataset's evaluation; available: {', '.join(brief)}",
                         field="train.best_metric")
    if brief[name] is None:
        raise MasraError("metric is undefined for this evaluation split", field="train.best_metric")
    return float(brief[name])


def train(
    cfg: Config,
    *,
    resume: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    init_from: str | Path | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    tensorboard: bool = True,
) -> TrainResult:
    """Train ``cfg`` into ``cfg.train.output_dir``.

    ``resume``: None starts a new run (the folder must be empty unless ``force``); ``"auto"`` continues from
    ``RUN_DIR/last`` when it exists and starts fresh otherwise; a path continues from that checkpoint.
    ``init_from``: a new run starts from that checkpoint's weights (masra.train.init_from).
    Under torchrun every process calls this; only rank 0 writes files and evaluates (and calls ``on_epoch``
    after every epoch, e.g. to show progress). ``tensorboard``: False writes no TensorBoard scalars, and says
    nothing about it (True writes them when the tensorboard package is installed, masra.train.run_log).
    """
    ctx = init_distributed(cfg.train.device)
    try:
        result = _train(cfg, ctx, resume=resume, force=force, progress=progress, init_from=init_from,
                        on_epoch=on_epoch, tensorboard=tensorboard)
        # Rank 0 finishes last (it evaluates and writes); tearing gloo down while a peer has already left
        # can abort the process ("terminate called without an active exception"): leave together.
        barrier(ctx)
        return result
    finally:
        cleanup(ctx)


def build_optimizer(params: list[torch.nn.Parameter], cfg: Config, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the run's lr and weight decay; the fused kernel on CPU and CUDA (one kernel for all
    parameters instead of several small ops each: same update up to float rounding)."""
    return torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                             fused=device.type in ("cpu", "cuda"))


def _train(cfg: Config, ctx: DistContext, *, resume: str | Path | None, force: bool, progress: bool,
           init_from: str | Path | None = None, on_epoch: Callable[[EpochReport], None] | None = None,
           tensorboard: bool = True) -> TrainResult:
    from masra.model import build_model

    run_dir = Path(cfg.train.output_dir)
    if init_from is not None:
        refuse_source_in_run_folder(init_from, run_dir)
    source = _resume_source(cfg, resume, force, ctx)
    seed_everything(cfg.train.seed + ctx.rank)

    train_set, sampler, train_loader, eval_loader, gt_rows = _build_data(cfg, ctx)
    dims = _model_dims(train_set)  # saved in every checkpoint's metadata; the config keeps what the user set
    dims.feature_encoder, dims.feature_encoder_fingerprint = feature_encoder_record(cfg.data)
    model, criterion = build_model(cfg, dims.v_feat_dim, dims.t_feat_dim, dims.semantic_dim)
    init_report = load_initial_weights(model, init_from) if init_from is not None and source is None else None
    # The parts draw their initial weights after the baseline's, so each variant leaves the global generator
    # elsewhere: re-seeding here gives every variant of a seed the same dropout masks from the first step (the
    # data order and targets have generators of their own, seeded with train.seed and the epoch), so two
    # variants differ only by their parts (masra ablate's paired differences).
    seed_everything(training_stream_seed(cfg.train.seed, ctx.rank))
    model.to(ctx.device)
    criterion.to(ctx.device)
    params = [p for p in list(model.parameters()) + list(criterion.parameters()) if p.requires_grad]
    optimizer = build_optimizer(params, cfg, ctx.device)
    scheduler = build_scheduler(optimizer, cfg.train, len(train_loader))
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=cfg.train.amp == "fp16")

    state = _RunState()
    if source is not None:
        state = _restore(source, model, criterion, optimizer, scheduler, scaler, ctx, len(train_loader))

    log = RunLog(run_dir if ctx.is_main else None, tensorboard=tensorboard)
    if ctx.is_main:
        save_config(cfg, run_dir / "config.yaml")
        log.text("config", config_to_dict(cfg))
        n_params = sum(p.numel() for p in model.parameters())
        log.line(f"{'resumed from ' + str(source) + ' at' if source else 'starting'} epoch {state.epoch + 1}/"
                 f"{cfg.train.epochs} on {ctx.device} x{ctx.world_size}; {len(train_set)} training samples; "
                 f"{n_params:,} parameters")
        if init_report is not None:
            log.line(init_report.summary())
            init_report.write(run_dir / "init_from.json")

    ddp_model = wrap_model(model, ctx)

    step_losses: list[float] = []
    best_metrics: dict[str, Any] | None = None
    stopped_early = False
    try:
        for epoch in range(state.epoch, cfg.train.epochs):
            started = time.time()
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]  # at the epoch's first step (the schedule moves every step)
            result = train_one_epoch(
                ddp_model, criterion, train_loader, optimizer, device=ctx.device, epoch=epoch,
                grad_clip=cfg.train.grad_clip, amp=cfg.train.amp, scaler=scaler, progress=progress and ctx.is_main,
                scheduler=scheduler, diagnostics_every=cfg.train.diagnostics_every,
            )
            step_losses.extend(result.step_losses)
            means = mean_across_ranks(ctx, result.means)
            state.epoch = epoch + 1
            log.scalars("train", {**means, "lr": lr}, state.epoch)
            log.line(f"epoch {state.epoch} lr {lr:.3g} {time.time() - started:.1f}s "
                     + " ".join(f"{k} {v:.4f}" for k, v in sorted(means.items())))

            improved, metrics, files = False, None, {}
            due = state.epoch % cfg.train.eval_every == 0 or state.epoch == cfg.train.epochs
            if ctx.is_main and eval_loader is not None and due:
                metrics, files = _evaluate_epoch(model, eval_loader, gt_rows, cfg, ctx, run_dir, state.epoch, log)
                if metrics is not None:
                    score = _metric_of(metrics, cfg.train.best_metric)
                    improved = state.best_metric is None or score > state.best_metric
                    if improved:
                        state.best_metric, state.best_epoch, state.evals_since_best = score, state.epoch, 0
                        best_metrics = metrics
                    else:
                        state.evals_since_best += 1
            if on_epoch is not None and ctx.is_main:
                on_epoch(EpochReport(state.epoch, cfg.train.epochs, means.get("loss", float("nan")),
                                     (metrics or {}).get("brief"), time.time() - started))
            rng = gather_objects(ctx, capture_rng_state())
            if ctx.is_main:
                info = {"epoch": state.epoch, "metrics": (metrics or {}).get("brief")}
                if improved:
                    _save(run_dir / "best", model, criterion, optimizer, scheduler, scaler, cfg, dims, state, rng,
                          info, files)
                _save(run_dir / "last", model, criterion, optimizer, scheduler, scaler, cfg, dims, state, rng, info)
            patience = cfg.train.early_stop_patience
            stop = patience > 0 and state.evals_since_best >= patience
            stopped_early = broadcast_object(ctx, stop)
            barrier(ctx)
            if stopped_early:
                log.line(f"early stop after epoch {state.epoch}: {patience} evaluations without improvement")
                break
    finally:
        log.close()
    if best_metrics is None and state.best_epoch is not None and ctx.is_main:
        best_metrics = json.loads((run_dir / "best" / "metrics.json").read_text())
    return TrainResult(run_dir=run_dir, epochs_done=state.epoch, best_metric=state.best_metric,
                       best_epoch=state.best_epoch, best_metrics=best_metrics, stopped_early=stopped_early,
                       step_losses=step_losses)


def _evaluate_epoch(model, eval_loader, gt_rows, cfg: Config, ctx: DistContext, run_dir: Path, epoch: int,
                    log: RunLog) -> tuple[dict[str, Any] | None, dict[str, Path]]:
    """Predict the eval split, write the submission (and metrics when GT is known); return both."""
    from masra.model.prediction import predict_rows

    split = cfg.data.eval_split_name
    preds_path = run_dir / "eval" / f"epoch_{epoch:04d}_{split}_preds.jsonl"
    rows = predict_rows(model, eval_loader, cfg, device=ctx.device)
    write_jsonl(preds_path, rows)
    files = {f"{split}_preds.jsonl": preds_path}
    if gt_rows is None:
        log.line(f"epoch {epoch}: wrote {preds_path.name} (no ground truth, no metrics)")
        return None, files
    from masra.eval import evaluate as evaluate_submission

    metrics = evaluate_submission(cfg.data.dataset, rows, gt_rows, ground_truth_checked=True)
    metrics_path = preds_path.with_name(f"epoch_{epoch:04d}_{split}_metrics.json")
    write_json(metrics_path, metrics)
    files["metrics.json"] = metrics_path
    log.scalars("eval", metrics["brief"], epoch)
    log.line(f"epoch {epoch} eval {split}: " + " ".join(f"{k} {v}" for k, v in metrics["brief"].items()))
    return metrics, files


def _save(folder: Path, model, criterion, optimizer, scheduler, scaler, cfg: Config, dims: ckpt.ModelDims,
          state: _RunState, rng: list[dict[str, Any]], info: dict[str, Any], files: dict[str, Path] | None = None):
    resume_state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "criterion": criterion.state_dict(),
        "rng": rng,
        "progress": dict(state.__dict__),
        "config": config_to_dict(cfg),
    }
    ckpt.save_checkpoint(folder, model=model, cfg=cfg, dims=dims, state=resume_state, info=info, extra_files=files)


def _restore(source: Path, model, criterion, optimizer, scheduler, scaler, ctx: DistContext,
             steps_per_epoch: int) -> _RunState:
    """Load weights, optimiser, scheduler, scaler, criterion and this rank's RNG state; return the progress."""
    import logging

    ckpt.load_weights(source, model)
    saved = ckpt.load_state(source)
    try:
        optimizer.load_state_dict(saved["optimizer"])
        restore_scheduler(scheduler, saved["scheduler"], saved["progress"]["epoch"], steps_per_epoch)
        if saved["scaler"]:
            scaler.load_state_dict(saved["scaler"])
        criterion.load_state_dict(saved["criterion"])
        rng, progress = saved["rng"], _RunState(**saved["progress"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise MasraError(f"resume state is incomplete or does not fit this run: {type(err).__name__}: {err}",
                         file=source / ckpt.STATE_FILE) from None
    if len(rng) == ctx.world_size:
        restore_rng_state(rng[ctx.rank])
    else:
        logging.getLogger("masra.train").warning(
            "checkpoint was written by %d processes, this run has %d: random streams are re-seeded, so the "
            "continuation is not bit-identical", len(rng), ctx.world_size)
        seed_everything(int(saved["config"]["train"]["seed"]) + ctx.rank + 7919 * progress.epoch)
    return progress
