"""The learning-rate schedule: a linear warm-up, then QD-DETR's step decay or a cosine decay, per optimizer step.

Stepped after every optimizer step (not every epoch), so a warm-up of a fraction of an epoch works and the
cosine curve is smooth. ``lr_schedule: step`` with no warm-up gives exactly QD-DETR's epoch-wise StepLR
(``lr * lr_gamma ** (epoch // lr_drop)``). The scheduler's position is part of every checkpoint, so a resumed
run continues on the same curve.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from masra.config import TrainConfig

log = logging.getLogger(__name__)


def lr_factor(step: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of ``cfg.lr`` for optimizer step ``step`` (0-based) of a run of ``cfg.epochs`` epochs."""
    steps_per_epoch = max(1, steps_per_epoch)
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if cfg.lr_schedule == "step":
        return warm * cfg.lr_gamma ** ((step // steps_per_epoch) // max(1, cfg.lr_drop))
    total = max(1, cfg.epochs * steps_per_epoch - warmup_steps)
    done = min(1.0, max(0.0, (step - warmup_steps) / total))
    return warm * (cfg.lr_min_ratio + (1.0 - cfg.lr_min_ratio) * 0.5 * (1.0 + math.cos(math.pi * done)))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler following :func:`lr_factor` (step it after every ``optimizer.step()``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, steps_per_epoch))


def restore_scheduler(
    scheduler: torch.optim.lr_scheduler.LambdaLR, state: dict[str, Any], epochs_done: int, steps_per_epoch: int
) -> None:
    """Continue the schedule of a checkpoint. A checkpoint written before schedules were stepped per step (an
    epoch-wise StepLR state) continues at the first step of its next epoch."""
    if "step_size" in state:
        log.info("checkpoint has an epoch-wise StepLR state: continuing at step %d", epochs_done * steps_per_epoch)
        scheduler.last_epoch = epochs_done * steps_per_epoch
        scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
        return
    scheduler.load_state_dict(state)
