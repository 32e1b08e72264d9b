"""The learning-rate schedule (warm-up, step, cosine; per optimizer step) and exact resume with it and with the
auxiliary-loss ramp."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from masra.config import TrainConfig
from masra.train.schedule import build_scheduler, lr_factor, restore_scheduler
import masra.train.trainer as trainer_module
from masra.train.trainer import train
from tiny_data import MASRA_ALL, tiny_config


def _factors(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    return [lr_factor(step, cfg, steps_per_epoch) for step in range(cfg.epochs * steps_per_epoch)]


def test_step_schedule_without_warmup_is_qd_detrs_epochwise_steplr():
    cfg = TrainConfig(epochs=7, lr_drop=3, lr_gamma=0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=1.0)
    steplr = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.1)
    expected = []
    for _ in range(cfg.epochs):
        expected += [optimizer.param_groups[0]["lr"]] * 4
        optimizer.step()
        steplr.step()
    assert _factors(cfg, 4) == pytest.approx(expected)


def test_warmup_rises_linearly_then_cosine_decays_to_the_floor():
    cfg = TrainConfig(epochs=5, lr_schedule="cosine", warmup_epochs=1.0, lr_min_ratio=0.1)
    factors = _factors(cfg, 10)
    assert factors[:10] == pytest.approx([(k + 1) / 10 for k in range(10)])
    decay = factors[10:]
    assert decay[0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert decay[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 39 / 40)))
    assert decay[20] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the decay


def test_scheduler_steps_the_optimizer_lr_per_step():
    cfg = TrainConfig(lr=0.5, epochs=2, lr_schedule="cosine", warmup_epochs=0.5)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=4)
    seen = []
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.5 * f for f in _factors(cfg, 4)])


def test_a_checkpoint_with_an_epochwise_steplr_state_continues_at_its_next_epoch():
    cfg = TrainConfig(lr=1.0, epochs=6, lr_drop=2, lr_gamma=0.5)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=1.0)
    old = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    for _ in range(3):  # three finished epochs, the old way
        optimizer.step()
        old.step()
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=5)
    restore_scheduler(scheduler, old.state_dict(), epochs_done=3, steps_per_epoch=5)
    assert scheduler.last_epoch == 15
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr_factor(16, cfg, 5)) == pytest.approx(0.5)


# Warm-up over part of an epoch, cosine decay and a ramp of the MASRA losses all move inside the resumed half.
SCHEDULED = ("train.epochs=4", "train.eval_every=1", "model.dropout=0.2", "train.lr_schedule=cosine",
             "train.warmup_epochs=1.5", "train.lr_min_ratio=0.05", "loss.aux_ramp_start=1", "loss.aux_ramp_epochs=2")


class _Killed(Exception):
    pass


def test_resume_is_exact_with_warmup_cosine_and_the_auxiliary_ramp(tiny_paths, tmp_path, monkeypatch):
    masra = [*MASRA_ALL, f"data.prior_dir={tiny_paths['priors']}", *SCHEDULED]
    straight = train(tiny_config(tiny_paths, tmp_path / "straight", *masra), progress=False)

    # The same 4-epoch run dies in epoch 3 (after its training steps, before its checkpoint), then resumes.
    evaluate = trainer_module._evaluate_epoch

    def dies_in_epoch_3(*args, **kwargs):
        if args[6] == 3:
            raise _Killed
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "_evaluate_epoch", dies_in_epoch_3)
    with pytest.raises(_Killed):
        train(tiny_config(tiny_paths, tmp_path / "resumed", *masra), progress=False)
    monkeypatch.setattr(trainer_module, "_evaluate_epoch", evaluate)
    second = train(tiny_config(tiny_paths, tmp_path / "resumed", *masra), resume="auto", progress=False)
    assert len(second.step_losses) == len(straight.step_losses) // 2
    assert second.step_losses == straight.step_losses[len(straight.step_losses) // 2:]  # bit-for-bit on CPU
    a = load_file(str(tmp_path / "straight" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "last" / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)
