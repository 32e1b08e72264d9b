"""``masra bench model``: the trainer's step (forward, loss with matching, backward, grad-norm clipping,
AdamW) and inference (a batch, and one query) of the baseline versus MASRA with all parts on, same data.

Times are medians over rounds that alternate the variants (robust to machine load), each variant built and
run in a process of its own (so no variant pays for the heap another left behind), wall time and that
process's user and system CPU time; each peak memory is measured in the variant's own process, reset before the
job's first run (whole-process RSS high-water on CPU, so memory outside torch's allocator counts too).
``--backbone`` picks the model (``model.backbone``) of masra's rows, and ``--qd-detr-repo``, ``--moment-detr-repo`` or
``--cg-detr-repo`` adds that backbone's anchor, its own code, as reference (masra.lab.bench.anchor_reference).
``--variants`` and ``--jobs`` pick what is timed, so that one long-video row can run alone. ``--runtime onnx`` times
the inference of masra's rows on their ONNX export (onnxruntime, as ``masra predict --runtime onnx`` serves it)
against the anchor's torch code.
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
    alternating_timings_in_workers,
)
from masra.lab.bench.anchor_reference import ANCHORS
from masra.lab.bench.model_jobs import ANCHOR_VARIANTS, INFERENCE_JOBS, JOBS, RUNTIMES, in_order
from masra.lab.bench.table import BenchTable, mb, ms, times
from masra.config import Config, load_config, set_masra_parts
from masra.data.batch import GroundingBatch
from masra.model import build_model
from masra.model.prediction import autocast, to_float32
from masra.train.trainer import build_optimizer

V_DIM, T_DIM, TOKENS, PRIOR_DIM = 2818, 512, 24, 384  # QVHighlights SlowFast + CLIP (+ TEF), CLIP text, MiniLM priors
# masra's config of each backbone's rows: the model of the anchor's released QVHighlights run (None: the defaults,
# which are QD-DETR's).
BACKBONE_CONFIGS = {"qd_detr": None, "moment_detr": "moment_detr_qvhighlights", "cg_detr": "cg_detr_qvhighlights"}


@dataclass(frozen=True)
class StepSpec:
    """One benchmarked model: a masra variant ("baseline", "masra") on ``backbone`` or that backbone's anchor
    (its name in ANCHOR_VARIANTS, timed from the checkout ``anchor_repo``), and its inputs."""

    variant: str
    batch_size: int
    clips: int
    device: str = "cpu"
    threads: int | None = None
    amp: str = "none"  # masra only: "bf16" runs the forward under autocast, as train.amp does
    encoder_window: int = 0
    anchor_repo: str | None = None
    backbone: str = "qd_detr"
    runtime: str = "torch"  # masra only: "onnx" runs the inference jobs on the model's ONNX export (onnxruntime)


@dataclass
class ModelRow:
    variant: str  # "baseline", "masra" or the backbone's anchor ("qd-detr", "moment-detr", "cg-detr")
    parameters: int
    train_step: Measurement | None  # forward + loss with matching + backward + clip + AdamW step
    inference: Measurement | None  # one forward of the whole batch, no priors
    inference_single: Measurement | None  # one forward of a single query (None: a job not asked for)
    vs_anchor: dict[str, float] = field(default_factory=dict)  # time ratio to the anchor per job (with a reference)
    amp: str = "none"  # "bf16": the forwards ran under bf16 autocast
    backbone: str = "qd_detr"  # model.backbone of the masra rows; the anchor row's backbone
    runtime: str = "torch"  # "onnx": the inference jobs ran on the ONNX export, on onnxruntime


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


def build_steps(spec: StepSpec) -> tuple[torch.nn.Module, dict[str, Callable[[], object]]]:
    """(model, {job name: callable}) for one model, built with seed 0."""
    device = torch.device(spec.device)
    batch, query_only, single = _batches(spec)
    anchor = ANCHORS[spec.backbone]
    if spec.variant == anchor.name:
        from masra.lab.bench.anchor_reference import anchor_steps

        if spec.anchor_repo is None:
            raise ValueError(f"the {anchor.title} reference needs anchor_repo")
        return anchor_steps(anchor, Path(spec.anchor_repo), batch, single, device)
    config = BACKBONE_CONFIGS[spec.backbone]
    cfg = Config() if config is None else load_config(config)
    set_masra_parts(cfg, "none" if spec.variant == "baseline" else "all")
    cfg.model.encoder_window = spec.encoder_window
    torch.manual_seed(0)
    model, criterion = build_model(cfg, V_DIM, T_DIM, PRIOR_DIM)
    model.to(device)
    criterion.to(device)
    if spec.runtime == "onnx":
        from masra.lab.bench.onnx_runtime import exported_inference

        return model, exported_inference(model.eval(), {"inference": query_only, "inference_single": single},
                                         spec.threads)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg, device)

    # What masra.train.engine.train_one_epoch does per batch, on a step that records no part diagnostics (as
    # train.diagnostics_every - 1 steps in train.diagnostics_every do).
    model.record_diagnostics = False

    def train_step() -> None:
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


def counted_steps(spec: StepSpec) -> tuple[int, dict[str, Callable[[], object]]]:
    """(parameter count, {job: callable}) of ``spec`` with its thread count set: what a timing process builds."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    model, steps = build_steps(spec)
    return sum(p.numel() for p in model.parameters()), steps


def bench_steps(
    specs: list[StepSpec], jobs: tuple[str, ...], repeats: int, warmup: int = 1
) -> tuple[dict[StepSpec, int], dict[StepSpec, dict[str, Measurement]]]:
    """(parameter counts, measurements): times of every job of every spec, each spec in a process of its own
    and the rounds alternating between them, and each job's whole-process peak in that process (jobs in the
    given order, smallest first; the peak is reset before a job's first run)."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup must be >= 0 and repeats >= 1, got {warmup} and {repeats}")
    device = torch.device(specs[0].device)
    parameters, timings = alternating_timings_in_workers(counted_steps, specs, jobs, device, repeats=repeats,
                                                         warmup=warmup)
    results = {spec: {job: Measurement(**dataclasses.asdict(timings[job][spec])) for job in jobs} for spec in specs}
    return parameters, results


def compared_specs(
    batch_size: int,
    clips: int,
    device: torch.device,
    threads: int | None,
    amp: str = "none",
    anchor_repo: Path | str | None = None,
    variants: tuple[str, ...] | None = None,
    backbone: str = "qd_detr",
    runtime: str = "torch",
) -> list[StepSpec]:
    """The models a step benchmark compares on one batch shape, in table order: the baseline and
    MASRA (all parts) on ``backbone``, and that backbone's anchor, its own code from the checkout ``anchor_repo``
    (never autocast nor exported: ``amp`` and ``runtime`` apply to masra only). ``variants`` (default: all three
    with ``anchor_repo``, the first two without) picks some; the anchor needs ``anchor_repo``."""
    if backbone not in ANCHOR_VARIANTS:
        raise ValueError(f"unknown backbone {backbone!r}; known: {', '.join(ANCHOR_VARIANTS)}")
    anchor = ANCHOR_VARIANTS[backbone]
    known = ("baseline", "masra", anchor)
    if variants is None:
        variants = known if anchor_repo is not None else known[:2]
    unknown = set(variants) - set(known)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)} on {backbone}; known: {', '.join(known)}")
    if anchor in variants and anchor_repo is None:
        raise ValueError(f"the {ANCHORS[backbone].title} reference needs anchor_repo")
    base = StepSpec("baseline", batch_size, clips, str(device), threads, amp, backbone=backbone, runtime=runtime)
    return [
        dataclasses.replace(base, variant=anchor, amp="none", runtime="torch", anchor_repo=str(anchor_repo))
        if variant == anchor else dataclasses.replace(base, variant=variant)
        for variant in in_order(variants, known)
    ]


def bench_model(
    *,
    batch_size: int = 32,
    clips: int = 75,
    device: torch.device,
    repeats: int = 3,
    threads: int | None = None,
    amp: str = "none",
    anchor_repo: Path | None = None,
    variants: tuple[str, ...] | None = None,
    jobs: tuple[str, ...] = JOBS,
    backbone: str = "qd_detr",
    warmup: int = 1,
    runtime: str = "torch",
) -> list[ModelRow]:
    """Rows for the baseline, MASRA (all parts, priors in the training batch) on ``backbone`` and, with
    ``anchor_repo``, the backbone's anchor, or for ``variants`` only (see :func:`compared_specs`); ``jobs`` (names
    in ``JOBS``) picks what is timed, the others are None in the rows. Ratios to the anchor need its row.
    ``runtime="onnx"`` runs masra's rows on their ONNX export: inference jobs only, in float32."""
    unknown = set(jobs) - set(JOBS)
    if not jobs or unknown:
        raise ValueError(f"jobs must be some of {', '.join(JOBS)}, got {list(jobs)}")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "onnx" and (set(jobs) - set(INFERENCE_JOBS) or amp != "none" or device.type != "cpu"):
        raise ValueError(f"an ONNX export is timed on {' and '.join(INFERENCE_JOBS)} in float32 on the CPU only, got "
                         f"jobs {list(jobs)}, amp {amp!r} and device {device}")
    jobs = in_order(jobs, JOBS)
    specs = compared_specs(batch_size, clips, device, threads, amp, anchor_repo, variants, backbone, runtime)
    parameters, measured = bench_steps(specs, jobs, repeats, warmup)
    anchor = ANCHOR_VARIANTS[backbone]
    reference = next((measured[spec] for spec in specs if spec.variant == anchor), None)
    rows = []
    for spec in specs:
        done = measured[spec]
        ratios = {job: done[job].seconds / reference[job].seconds for job in jobs} if reference else {}
        rows.append(ModelRow(spec.variant, parameters[spec], done.get("train_step"), done.get("inference"),
                             done.get("inference_single"), ratios, spec.amp, backbone, spec.runtime))
    return rows


def variant_label(row: ModelRow, bf16_emulated: bool) -> str:
    """The variant as the table shows it: bf16 rows say so, and say when the CPU only emulates bf16; rows of an
    ONNX export say onnxruntime."""
    if row.runtime == "onnx":
        return f"{row.variant} (onnxruntime)"
    if row.amp != "bf16":
        return row.variant
    return f"{row.variant} (bf16, emulated)" if bf16_emulated else f"{row.variant} (bf16)"


def _cpu_times(m: Measurement) -> str:
    if m.user_seconds is None or m.system_seconds is None:
        return "n/a"
    return f"{m.user_seconds:.2f} / {m.system_seconds:.2f} s"


Column = tuple[str, Callable[[ModelRow], str]]


def _job_columns(job: str, base: ModelRow | None) -> list[Column]:
    """The columns of one timed job: its time, the train step's CPU times, the ratio to the baseline (with a
    baseline row; not for one query) and its peak (not for one query)."""
    label = {"train_step": "train step", "inference": "inference", "inference_single": "1 query"}[job]
    columns: list[Column] = [(label, lambda r: ms(getattr(r, job).seconds))]
    if job == "train_step":
        columns.append(("user / sys", lambda r: _cpu_times(r.train_step)))
    if job == "inference_single":
        return columns
    if base is not None:
        columns.append(("vs baseline", lambda r: times(getattr(r, job).seconds, getattr(base, job).seconds)))
    columns.append(({"train_step": "train peak", "inference": "infer peak"}[job], lambda r: mb(getattr(r, job).peak_bytes)))
    return columns


def model_table(rows: list[ModelRow], bf16_emulated: bool = False) -> BenchTable:
    """One row per variant, columns for the jobs that were timed; with the anchor as reference (rows carry
    ``vs_anchor``) a ratio column per job, named after the anchor. ``bf16_emulated``: the CPU lacks bf16
    instructions (bf16 rows say so). The caption names a backbone other than QD-DETR."""
    base = next((r for r in rows if r.variant == "baseline"), None)
    timed = [job for job in ("train_step", "inference", "inference_single") if getattr(rows[0], job) is not None]
    columns: list[Column] = [("variant", lambda r: variant_label(r, bf16_emulated)), ("parameters", lambda r: f"{r.parameters:,}")]
    for job in timed:
        columns += _job_columns(job, base)
    anchor = ANCHORS[rows[0].backbone]
    reference_names = {"train_step": "step", "inference": "infer", "inference_single": "1 query"}
    if any(r.vs_anchor for r in rows):
        columns += [(f"{reference_names[job]} / {anchor.title}", lambda r, job=job: f"{r.vs_anchor[job]:.2f}x")
                    for job in timed]
    caption = ("user / sys: CPU time of the whole process in user mode and in the kernel; peaks: whole-process "
               "resident-memory high-water during the job, in the variant's own process (CPU)")
    if any(r.runtime == "onnx" for r in rows):
        caption += ("; onnxruntime: the model's ONNX export (masra export) on onnxruntime's CPU provider, its threads "
                    "sleeping between runs")
    if anchor.backbone != "qd_detr":
        caption = f"baseline and masra on the {anchor.title} backbone (model.backbone {anchor.backbone}); {caption}"
    return BenchTable([name for name, _ in columns], [[cell(r) for _, cell in columns] for r in rows], caption)
