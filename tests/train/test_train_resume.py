"""Resume must continue a run exactly: same per-step losses, same weights, no lost or repeated epoch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kill import run, train_command

from masra.config import save_config
from masra.train.trainer import train
from tiny_data import tiny_config

# lr_drop=3 makes the scheduler state matter: the lr changes inside the resumed half of the run.
COMMON = ("train.epochs=4", "train.lr_drop=3", "train.eval_every=1", "model.dropout=0.2")


def _weights(run_dir: Path) -> dict:
    return load_file(str(run_dir / "last" / "model.safetensors"))


def test_killed_and_resumed_run_equals_uninterrupted_run(tiny_paths, tmp_path):
    straight = train(tiny_config(tiny_paths, tmp_path / "straight", *COMMON), progress=False)

    first = train(tiny_config(tiny_paths, tmp_path / "resumed", *COMMON, "train.epochs=2"), progress=False)
    assert first.epochs_done == 2
    # A fresh config object and fresh model/optimiser objects: only the files carry the state over.
    second = train(tiny_config(tiny_paths, tmp_path / "resumed", *COMMON), resume="auto", progress=False)

    assert second.epochs_done == 4
    assert len(straight.step_losses) == len(first.step_losses) + len(second.step_losses)
    assert first.step_losses + second.step_losses == straight.step_losses  # bit-for-bit on CPU
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    assert second.best_epoch == straight.best_epoch
    assert second.best_metric == straight.best_metric


def test_auto_resume_of_a_finished_run_trains_nothing(tiny_paths, tmp_path):
    cfg = tiny_config(tiny_paths, tmp_path / "run", "train.epochs=1", "data.eval_path=")
    train(cfg, progress=False)
    again = train(tiny_config(tiny_paths, tmp_path / "run", "train.epochs=1", "data.eval_path="), resume="auto",
                  progress=False)
    assert again.epochs_done == 1 and again.step_losses == []


def _wait_for_epoch(run_dir: Path, epoch: int, proc: subprocess.Popen, timeout: float) -> None:
    info = run_dir / "last" / "checkpoint.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training exited early with {proc.returncode}: {proc.stderr.read()}")
        try:
            if json.loads(info.read_text())["epoch"] >= epoch:
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared in time")


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_auto_completes(tiny_paths, tmp_path):
    run_dir = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(tiny_paths, run_dir, "train.epochs=30", "train.eval_every=1"), config)
    command = [sys.executable, "-m", "masra.cli.main", "train", "--config", str(config), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for_epoch(run_dir, 1, proc, timeout=120)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = json.loads((run_dir / "last" / "checkpoint.json").read_text())["epoch"]
    assert killed_at < 30

    finish = subprocess.run(command[:-1] + ["--no-progress", "--resume", "auto", "--set", f"train.epochs={killed_at + 2}"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert finish.returncode == 0, finish.stderr
    assert json.loads((run_dir / "last" / "checkpoint.json").read_text())["epoch"] == killed_at + 2
    log = (run_dir / "train.log").read_text()
    assert f"resumed from {run_dir / 'last'} at epoch {killed_at + 1}" in log
    # Every epoch 1..killed_at+2 is logged; epochs after the kill point are not repeated.
    trained = [int(line.split(" epoch ")[1].split()[0]) for line in log.splitlines() if " lr " in line]
    assert trained[-2:] == [killed_at + 1, killed_at + 2]
    assert sorted(set(trained)) == list(range(1, killed_at + 3))
    assert not (run_dir / "last.tmp").exists()


# Batches of 2 from 8 samples: four steps per epoch, so step 6 is in the middle of epoch 2.
KILLED = (*COMMON, "train.batch_size=2")


def _assert_same_run(straight: Path, resumed: Path) -> None:
    """Same final weights (bit for bit), same last and best metrics, nothing left of the interruption."""
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for folder in ("last", "best"):
        info_a = json.loads((straight / folder / "checkpoint.json").read_text())
        info_b = json.loads((resumed / folder / "checkpoint.json").read_text())
        assert info_a["metrics"] is not None and (info_a["epoch"], info_a["metrics"]) == (info_b["epoch"], info_b["metrics"])
    assert (straight / "best" / "metrics.json").read_text() == (resumed / "best" / "metrics.json").read_text()
    assert not [p.name for p in resumed.iterdir() if p.suffix in (".old", ".tmp")]


def _kill(tiny_paths, tmp_path: Path, **kill_point) -> tuple[Path, Path]:
    """Train the uninterrupted reference in-process, then a `masra train` process killed at ``kill_point``."""
    train(tiny_config(tiny_paths, tmp_path / "straight", *KILLED), progress=False)
    run_dir = tmp_path / "resumed"
    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(tiny_paths, run_dir, *KILLED), config)
    killed = run(train_command(config), **kill_point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    return run_dir, config


def _resume(config: Path, run_dir: Path, source: str, epoch: int) -> None:
    finished = run(train_command(config, "--resume", "auto"))
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"resumed from {run_dir / source} at epoch {epoch}" in (run_dir / "train.log").read_text()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights_and_metrics(tiny_paths, tmp_path):
    run_dir, config = _kill(tiny_paths, tmp_path, kill_at_step=6)  # epoch 2, after its second of four steps
    assert json.loads((run_dir / "last" / "checkpoint.json").read_text())["epoch"] == 1
    _resume(config, run_dir, "last", 2)
    _assert_same_run(tmp_path / "straight", run_dir)


@pytest.mark.slow
def test_sigkill_between_the_two_renames_of_a_checkpoint_swap_then_resume(tiny_paths, tmp_path):
    # The 2nd time last/ becomes last.old is epoch 3's save: last.old holds epoch 2, last.tmp epoch 3.
    run_dir, config = _kill(tiny_paths, tmp_path, kill_at_swap="last:2")
    assert not (run_dir / "last").exists()
    assert json.loads((run_dir / "last.old" / "checkpoint.json").read_text())["epoch"] == 2
    assert json.loads((run_dir / "last.tmp" / "checkpoint.json").read_text())["epoch"] == 3
    _resume(config, run_dir, "last.old", 3)
    _assert_same_run(tmp_path / "straight", run_dir)
