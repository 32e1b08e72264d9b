"""The two loops of a run, like DETR's engine: ``train_one_epoch`` and ``evaluate``."""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from masra.config import Config
from masra.data.batch import GroundingBatch
from masra.errors import MasraError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# The outputs the Hungarian matcher reads: they must be finite before the criterion runs.
MATCHED_OUTPUTS = ("pred_logits", "pred_spans")


@dataclass
class EpochResult:
    means: dict[str, float]  # every criterion term averaged over the epoch's steps, plus "loss"
    step_losses: list[float] = field(default_factory=list)  # the weighted total of every step, in order


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CPU or CUDA; a no-op context for ``amp == "none"``."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def _to_float32(value: Any) -> Any:
    """Model outputs as float32, so losses and the matcher never run in reduced precision."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_float32(v) for v in value]
    return value


def train_one_epoch(
    model: torch.nn.Module,
    criterion: torch.nn.Module,
    loader: Iterable[GroundingBatch],
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    epoch: int,
    grad_clip: float,
    amp: str = "none",
    scaler: torch.amp.GradScaler | None = None,
    progress: bool = True,
) -> EpochResult:
    """One pass over ``loader``: forward under autocast, fp32 criterion, (scaled) backward, grad-norm clip, step."""
    model.train()
    criterion.train()
    sums: dict[str, float] = defaultdict(float)
    step_losses: list[float] = []
    params = [p for group in optimizer.param_groups for p in group["params"]]
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", unit="batch", disable=not progress, leave=False, dynamic_ncols=True)
    for step, batch in enumerate(bar):
        batch = batch.to(device, non_blocking=True)
        with autocast(device, amp):
            outputs = model(batch)
        # A diverged model gives non-finite outputs; the matcher cannot assign them, so say so first.
        broken = [k for k in MATCHED_OUTPUTS if k in outputs and not torch.isfinite(outputs[k]).all()]
        if broken:
            raise MasraError(f"loss is not finite at epoch {epoch + 1}, step {step + 1}: model outputs "
                             f"{', '.join(broken)} are not finite (diverged: lower train.lr?)")
        losses = criterion(_to_float32(outputs), batch)
        loss = losses["loss"]
        if not math.isfinite(loss.item()):
            terms = {k: round(float(v.detach()), 4) for k, v in losses.items()}
            raise MasraError(f"loss is not finite at epoch {epoch + 1}, step {step + 1}: {terms}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
        step_losses.append(loss.item())
        for key, value in losses.items():
            sums[key] += float(value.detach())
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    bar.close()
    count = max(len(step_losses), 1)
    return EpochResult(means={k: v / count for k, v in sums.items()}, step_losses=step_losses)


def iterate_predictions(
    model: torch.nn.Module,
    loader: Iterable[GroundingBatch],
    *,
    device: torch.device,
    amp: str = "none",
    progress: bool = False,
) -> Iterator[tuple[dict[str, Any], GroundingBatch]]:
    """Model outputs (float32, on the host) with their batch, in loader order, in eval mode without gradients."""
    model.eval()
    with torch.no_grad():
        for batch in tqdm(loader, desc="predict", unit="batch", disable=not progress, leave=False):
            with autocast(device, amp):
                outputs = model(batch.to(device, non_blocking=True))
            yield _to_float32(outputs), batch


def evaluate(
    model: torch.nn.Module,
    loader: Iterable[GroundingBatch],
    cfg: Config,
    *,
    device: torch.device,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Official submission rows for every sample of ``loader`` (dataset post-processing from ``cfg.eval``)."""
    from masra.model.postprocess import outputs_to_submission

    rows: list[dict[str, Any]] = []
    for outputs, batch in iterate_predictions(model, loader, device=device, amp=cfg.train.amp, progress=progress):
        rows.extend(outputs_to_submission(outputs, batch.meta, cfg.eval, cfg.data.clip_length))
    return rows
