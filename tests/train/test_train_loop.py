"""Training-loop behaviour: mixed precision on CPU, early stopping, model selection errors, logging."""

from __future__ import annotations

import math

import pytest

from masra.errors import MasraError
from masra.train.trainer import train
from tiny_data import tiny_config


# fp16's GradScaler skips the first steps while it calibrates its scale; PyTorch then warns about the order of
# scheduler and optimiser steps, which is expected here.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cpu(tiny_paths, tmp_path, amp):
    result = train(tiny_config(tiny_paths, tmp_path / amp, "train.epochs=1", f"train.amp={amp}"), progress=False)
    assert result.epochs_done == 1 and result.best_epoch == 1
    assert all(math.isfinite(loss) for loss in result.step_losses)


def test_early_stop_after_patience_evaluations_without_improvement(tiny_paths, tmp_path):
    # lr 0: the model never changes, so the metric never improves after the first evaluation.
    cfg = tiny_config(tiny_paths, tmp_path / "run", "train.epochs=6", "train.lr=0", "train.early_stop_patience=2")
    result = train(cfg, progress=False)
    assert result.stopped_early and result.epochs_done == 3 and result.best_epoch == 1
    assert "early stop after epoch 3" in (tmp_path / "run" / "train.log").read_text()


def test_unknown_best_metric_names_the_available_ones(tiny_paths, tmp_path):
    cfg = tiny_config(tiny_paths, tmp_path / "run", "train.epochs=1", "train.best_metric=R@1")
    with pytest.raises(MasraError, match="train.best_metric.*MR-full-mAP"):
        train(cfg, progress=False)


def test_tensorboard_gets_every_loss_term_lr_and_metrics(tiny_paths, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(tiny_config(tiny_paths, tmp_path / "run", "train.epochs=1"), progress=False)
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_span", "train/loss_giou", "train/loss_label", "train/loss_saliency",
            "train/lr", "eval/MR-full-mAP", "eval/HL-min-VeryGood-mAP"} <= tags


def test_tensorboard_off_writes_no_events_and_says_nothing(tiny_paths, tmp_path, caplog):
    result = train(tiny_config(tiny_paths, tmp_path / "run", "train.epochs=1"), progress=False, tensorboard=False)
    assert not (result.run_dir / "tensorboard").exists()
    assert "TensorBoard" not in (result.run_dir / "train.log").read_text() + caplog.text
    assert result.best_checkpoint is not None and (result.best_checkpoint / "model.safetensors").is_file()


def test_masra_run_with_priors_resumes_exactly_and_predicts_without_priors(tiny_paths, tmp_path):
    import numpy as np

    from masra.inference import Grounder
    from tiny_data import MASRA_ALL

    masra = (*MASRA_ALL, f"data.prior_dir={tiny_paths['priors']}", "train.epochs=2")
    straight = train(tiny_config(tiny_paths, tmp_path / "straight", *masra), progress=False)
    train(tiny_config(tiny_paths, tmp_path / "resumed", *masra, "train.epochs=1"), progress=False)
    resumed = train(tiny_config(tiny_paths, tmp_path / "resumed", *masra), resume="auto", progress=False)
    assert resumed.step_losses == straight.step_losses[len(straight.step_losses) - len(resumed.step_losses):]
    log = (tmp_path / "straight" / "train.log").read_text()
    assert all(f"loss_{term} " in log for term in ("dai_relevance", "esta", "lrca", "sge_caption"))

    assert resumed.best_metrics == straight.best_metrics  # evaluation runs without priors

    grounder = Grounder.from_checkpoint(tmp_path / "straight" / "last")
    assert grounder.dims.semantic_dim == 6
    pred = grounder.predict(np.random.default_rng(0).normal(size=(10, 12)), np.ones((3, 8)), top_k=2)
    assert len(pred.windows) == 2 and pred.saliency.shape == (10,)
