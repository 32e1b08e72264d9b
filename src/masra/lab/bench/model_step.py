"""``masra bench model``: the trainer's step (forward, loss with matching, backward, grad-norm clipping,
AdamW) and inference (a batch, and one query) of the baseline versus MASRA with all parts on, same data.

Times are medians over rounds that alternate the variants in this process (robust to machine load); each
peak memory is measured in a fresh process that runs only that job (whole-process RSS high-water on CPU,
so memory outside torch's allocator counts too). ``--qd-detr-repo`` adds QD-DETR's own code as reference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from masra.lab.bench.batches import synthetic_batch
from masra.lab.bench.measure import (
    Measurement,
    alternating_median_seconds,
    in_fresh_process,
    process_peak_bytes,
    reset_process_peak,
)
from masra.lab.bench.table import BenchTable, mb, ms, times
from masra.config import Config, set_masra_parts
from masra.data.batch import GroundingBatch
from masra.model import build_model
from masra.model.prediction import autocast, to_float32
from masra.train.trainer import build_optimizer

V_DIM, T_DIM, TOKENS, PRIOR_DIM = 2818, 512, 24, 384  # QVHighlights SlowFast + CLIP (+ TEF), CLIP text, MiniLM priors
QD_DETR = "qd-detr"
JOBS = ("inference_single", "inference", "train_step")  # smallest first (peaks are read in this order)


@dataclass(frozen=True)
class StepSpec:
    """One benchmarked model: a masra variant ("baseline", "masra") or QD_DETR, and its inputs."""

    variant: str
    batch_size: int
    clips: int
    device: str = "cpu"
    threads: int | None = None
    amp: str = "none"  # masra only: "bf16" runs the forward under autocast, as train.amp does
    encoder_window: int = 0
    qd_detr_repo: str | None = None


@dataclass
class ModelRow:
    variant: str  # "baseline", "masra" or "qd-detr"
    parameters: int
    train_step: Measurement  # forward + loss with matching + backward + clip + AdamW step
    inference: Measurement  # one forward of the whole batch, no priors
    inference_single: Measurement  # one forward of a single query
    vs_qd_detr: dict[str, float] = field(default_factory=dict)  # time ratio to QD-DETR per job (with a reference)


def _batches(spec: StepSpec) -> tuple[GroundingBatch, GroundingBatch, GroundingBatch]:
    """Training batch (targets, priors), and the same videos without priors for inference: all and the first."""
    device = torch.device(spec.device)
    batch = synthetic_batch(spec.batch_size, spec.clips, TOKENS, V_DIM, T_DIM, PRIOR_DIM).to(device)
    query_only = dataclasses.replace(
        batch, has_priors=None, caption_emb=None, caption_mask=None, event_emb=None, event_spans=None, event_mask=None
    )
    single = dataclasses.replace(
        query_only,
        video_feats=query_only.video_feats[:1],
        video_mask=query_only.video_mask[:1],
        query_feats=query_only.query_feats[:1],
        query_mask=query_only.query_mask[:1],
        meta=query_only.meta[:1],
    )
    return batch, query_only, single


def build_steps(spec: StepSpec) -> tuple[torch.nn.Module, dict[str, Callable[[], None]]]:
    """(model, {job name: callable}) for one model, built with seed 0."""
    device = torch.device(spec.device)
    batch, query_only, single = _batches(spec)
    if spec.variant == QD_DETR:
        from masra.lab.bench.qd_detr_reference import qd_detr_steps

        if spec.qd_detr_repo is None:
            raise ValueError("the QD-DETR reference needs qd_detr_repo")
        return qd_detr_steps(Path(spec.qd_detr_repo), batch, single, device)
    cfg = set_masra_parts(Config(), "none" if spec.variant == "baseline" else "all")
    cfg.model.encoder_window = spec.encoder_window
    torch.manual_seed(0)
    model, criterion = build_model(cfg, V_DIM, T_DIM, PRIOR_DIM)
    model.to(device)
    criterion.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg, device)

    def train_step() -> None:  # what masra.train.engine.train_one_epoch does per batch
        model.train()
        with autocast(device, spec.amp):
            outputs = model(batch)
        loss = criterion(to_float32(outputs), batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()

    def infer(b: GroundingBatch) -> Callable[[], None]:
        def run() -> None:
            model.eval()
            with torch.inference_mode(), autocast(device, spec.amp):
                model(b)

        return run

    steps = {"train_step": train_step, "inference": infer(query_only), "inference_single": infer(single)}
    return model, steps


def peak_bytes_of(spec: StepSpec, jobs: tuple[str, ...]) -> dict[str, int]:
    """In a fresh process: build ``spec``, then per job (in the given order, smallest first) reset the peak,
    run the job twice and read the whole-process peak."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    _, steps = build_steps(spec)
    device = torch.device(spec.device)
    peaks = {}
    for job in jobs:
        reset_process_peak(device)
        for _ in range(2):
            steps[job]()
        peaks[job] = process_peak_bytes(device)
    return peaks


def bench_steps(
    specs: list[StepSpec], jobs: tuple[str, ...], repeats: int
) -> tuple[dict[StepSpec, int], dict[StepSpec, dict[str, Measurement]]]:
    """(parameter counts, measurements): times of every job of every spec alternated in this process, the
    peaks of each spec in a fresh process of its own."""
    built = {spec: build_steps(spec) for spec in specs}
    parameters = {spec: sum(p.numel() for p in model.parameters()) for spec, (model, _) in built.items()}
    device = torch.device(specs[0].device)
    seconds = {
        job: alternating_median_seconds({spec: steps[job] for spec, (_, steps) in built.items()}, device, repeats=repeats)
        for job in jobs
    }
    del built  # the peak processes get the machine's memory to themselves
    results = {}
    for spec in specs:
        peaks = in_fresh_process(peak_bytes_of, spec, jobs)
        results[spec] = {job: Measurement(seconds[job][spec], peaks[job]) for job in jobs}
    return parameters, results


def compared_specs(
    batch_size: int,
    clips: int,
    device: torch.device,
    threads: int | None,
    amp: str = "none",
    qd_detr_repo: Path | str | None = None,
) -> list[StepSpec]:
    """The models a step benchmark compares on one batch shape: the baseline, MASRA (all parts) and, with
    ``qd_detr_repo``, QD-DETR's own code last (never autocast: ``amp`` applies to masra only)."""
    base = StepSpec("baseline", batch_size, clips, str(device), threads, amp)
    specs = [base, dataclasses.replace(base, variant="masra")]
    if qd_detr_repo is not None:
        specs.append(dataclasses.replace(base, variant=QD_DETR, amp="none", qd_detr_repo=str(qd_detr_repo)))
    return specs


def bench_model(
    *,
    batch_size: int = 32,
    clips: int = 75,
    device: torch.device,
    repeats: int = 3,
    threads: int | None = None,
    amp: str = "none",
    qd_detr_repo: Path | None = None,
) -> list[ModelRow]:
    """Rows for the baseline, MASRA (all parts, priors in the training batch) and, with ``qd_detr_repo``, QD-DETR."""
    specs = compared_specs(batch_size, clips, device, threads, amp, qd_detr_repo)
    parameters, measured = bench_steps(specs, JOBS, repeats)
    reference = measured.get(specs[-1]) if qd_detr_repo is not None else None
    rows = []
    for spec in specs:
        jobs = measured[spec]
        ratios = {job: jobs[job].seconds / reference[job].seconds for job in JOBS} if reference else {}
        rows.append(ModelRow(spec.variant, parameters[spec], jobs["train_step"], jobs["inference"],
                             jobs["inference_single"], ratios))
    return rows


def model_table(rows: list[ModelRow]) -> BenchTable:
    """One row per variant; with a QD-DETR reference (rows carry ``vs_qd_detr``) three ratio columns more."""
    base = rows[0]
    with_reference = any(r.vs_qd_detr for r in rows)
    columns = ["variant", "parameters", "train step", "vs baseline", "train peak", "inference", "vs baseline",
               "1 query", "infer peak"]
    if with_reference:
        columns += ["step / QD-DETR", "infer / QD-DETR", "1 query / QD-DETR"]
    cells = []
    for r in rows:
        row = [
            r.variant, f"{r.parameters:,}", ms(r.train_step.seconds), times(r.train_step.seconds, base.train_step.seconds),
            mb(r.train_step.peak_bytes), ms(r.inference.seconds), times(r.inference.seconds, base.inference.seconds),
            ms(r.inference_single.seconds), mb(r.inference.peak_bytes),
        ]
        if r.vs_qd_detr:
            row += [f"{r.vs_qd_detr[job]:.2f}x" for job in ("train_step", "inference", "inference_single")]
        cells.append(row)
    caption = "peaks: whole-process resident-memory high-water during the job, in a fresh process per variant (CPU)"
    return BenchTable(columns, cells, caption)
