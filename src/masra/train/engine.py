"""The training loop of one epoch, like DETR's engine (its evaluation loop is ``masra.model.prediction``)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sized
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from masra.data.batch import GroundingBatch
from masra.errors import MasraError
from masra.model.prediction import autocast, to_float32

# The outputs the Hungarian matcher reads: they must be finite before the criterion runs.
MATCHED_OUTPUTS = ("pred_logits", "pred_spans")


@dataclass
class EpochResult:
    means: dict[str, float]  # every criterion term averaged over the epoch's steps, plus "loss"
    step_losses: list[float] = field(default_factory=list)  # the weighted total of every step, in order


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
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    diagnostics_every: int = 1,
) -> EpochResult:
    """One pass over ``loader``: forward under autocast, fp32 criterion, (scaled) backward, grad-norm clip, step,
    then the per-step ``scheduler``. The criterion learns the position in training (epochs done, fractional)
    before each step, for its auxiliary-loss ramp. The model records the parts' diagnostics on the steps
    0, ``diagnostics_every``, 2·``diagnostics_every``, ...; each term's mean is over the steps that reported it."""
    model.train()
    criterion.train()
    grounding_model = getattr(model, "module", model)  # under DistributedDataParallel, the wrapped model
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    step_losses: list[float] = []
    params = [p for group in optimizer.param_groups for p in group["params"]]
    steps = len(loader) if isinstance(loader, Sized) else 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", unit="batch", disable=not progress, leave=False, dynamic_ncols=True)
    for step, batch in enumerate(bar):
        batch = batch.to(device, non_blocking=True)
        if hasattr(criterion, "set_progress"):
            criterion.set_progress(epoch + step / max(steps, 1))
        if hasattr(grounding_model, "record_diagnostics"):
            grounding_model.record_diagnostics = step % max(diagnostics_every, 1) == 0
        with autocast(device, amp):
            outputs = model(batch)
        # A diverged model gives non-finite outputs; the matcher cannot assign them, so say so first.
        broken = [k for k in MATCHED_OUTPUTS if k in outputs and not torch.isfinite(outputs[k]).all()]
        if broken:
            raise MasraError(f"loss is not finite at epoch {epoch + 1}, step {step + 1}: model outputs "
                             f"{', '.join(broken)} are not finite (diverged: lower train.lr?)")
        losses = criterion(to_float32(outputs), batch)
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
        if scheduler is not None:
            scheduler.step()
        step_losses.append(loss.item())
        for key, value in losses.items():
            sums[key] += float(value.detach())
            counts[key] += 1
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    bar.close()
    if hasattr(grounding_model, "record_diagnostics"):
        grounding_model.record_diagnostics = True
    return EpochResult(means={k: v / counts[k] for k, v in sums.items()}, step_losses=step_losses)
