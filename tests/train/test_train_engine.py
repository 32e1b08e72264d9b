"""The training step's guards and data loading: a non-finite loss stops the run before the optimiser steps,
and worker processes load exactly what the main process loads."""

from __future__ import annotations

import pytest
import torch

from masra.cli.main import main
from masra.config import save_config
from masra.data.dataset import GroundingDataset, collate
from masra.data.splits import load_records
from masra.errors import MasraError
from masra.model import build_model
from masra.train.engine import train_one_epoch
from masra.train.trainer import train
from tiny_data import tiny_config


def test_non_finite_loss_raises_before_the_optimizer_step(tiny_paths, tmp_path):
    cfg = tiny_config(tiny_paths, tmp_path / "unused")
    dataset = GroundingDataset(load_records(cfg.data.train_path, cfg.data), cfg.data, train=True)
    model, criterion = build_model(cfg, *dataset.feature_dims())
    with torch.no_grad():
        model.saliency_proj1.weight[0, 0] = float("nan")
    before = {name: value.clone() for name, value in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [collate([dataset[i] for i in range(4)])]
    with pytest.raises(MasraError, match=r"loss is not finite at epoch 3, step 1: \{.*'loss_saliency': nan"):
        train_one_epoch(model, criterion, batches, optimizer, device=torch.device("cpu"), epoch=2, grad_clip=0.1,
                        progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) or torch.isnan(before[k]).any() for k in before)
    assert all(p.grad is None for p in model.parameters())  # stopped before backward: nothing to apply
    assert not optimizer.state


def test_diverging_run_stops_with_a_clear_error_and_keeps_no_broken_checkpoint(tiny_paths, tmp_path, capsys):
    # lr 1e30: the first AdamW step moves every weight by ~1e30, so the second step's loss overflows.
    config = tmp_path / "diverge.yaml"
    save_config(tiny_config(tiny_paths, tmp_path / "run", "train.lr=1e30", "train.epochs=2"), config)
    assert main(["train", "--config", str(config), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "loss is not finite at epoch 1, step 2: model outputs pred_logits, pred_spans are not finite" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "last").exists()


def test_data_loader_workers_train_exactly_like_the_main_process(tiny_paths, tmp_path):
    main_process = train(tiny_config(tiny_paths, tmp_path / "w0", "train.epochs=2"), progress=False)
    workers = train(tiny_config(tiny_paths, tmp_path / "w2", "train.epochs=2", "data.num_workers=2"), progress=False)
    assert len(workers.step_losses) == 4
    assert workers.step_losses == main_process.step_losses
    assert workers.best_metrics == main_process.best_metrics
