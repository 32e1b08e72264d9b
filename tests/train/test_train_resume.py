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
from safetensors.torch import load_file

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
