"""Real 2-process DDP runs on CPU (gloo) through torchrun and ``masra train``: a run equals one process with
the global batch, and a killed run resumes to the same weights."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kill import run, train_command
from masra.config import save_config
from masra.train.trainer import train
from test_train_ddp_equivalence import TOLERANCE
from tiny_data import tiny_config

# Global batch 4 = 2 per rank, two steps per epoch; nothing random inside a step (see the equivalence test).
DDP = ("train.epochs=3", "train.batch_size=4", "model.dropout=0", "model.input_dropout=0",
       "model.use_negative_pairs=false")


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "last" / "model.safetensors"))


def _config(paths: dict[str, Path], run_dir: Path) -> Path:
    config = run_dir.with_suffix(".yaml")
    save_config(tiny_config(paths, run_dir, *DDP), config)
    return config


@pytest.fixture(scope="module")
def ddp_run(windows_paths, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    done = run(train_command(_config(windows_paths, run_dir), processes=2))
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(ddp_run):
    info = json.loads((ddp_run / "last" / "checkpoint.json").read_text())
    assert info["epoch"] == 3
    log = (ddp_run / "train.log").read_text()
    assert "x2;" in log  # both processes joined one run
    assert log.count("epoch 2 lr") == 1  # only rank 0 writes
    assert (ddp_run / "eval" / "epoch_0002_val_preds.jsonl").is_file()
    # Both ranks' RNG states are kept, so a resume under the same world size continues each stream.
    state = torch.load(ddp_run / "last" / "state.pt", weights_only=True)
    assert len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    assert not any(key.startswith("module.") for key in _weights(ddp_run))  # saved unwrapped


@pytest.mark.slow
def test_two_processes_train_the_weights_of_one_process_with_the_global_batch(ddp_run, windows_paths, tmp_path):
    """The sampler gives rank r the samples r, r+2, ... of each global batch: the same samples per step."""
    single = train(tiny_config(windows_paths, tmp_path / "single", *DDP), progress=False)
    assert single.epochs_done == 3
    a, b = _weights(ddp_run), _weights(tmp_path / "single")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")
    assert any(not torch.equal(a[name], b[name]) for name in a)  # really two different processes' sums


@pytest.mark.slow
def test_killed_two_process_run_resumes_to_the_uninterrupted_weights(ddp_run, windows_paths, tmp_path):
    run_dir = tmp_path / "run"
    config = _config(windows_paths, run_dir)
    killed = run(train_command(config, processes=2), kill_at_step=3)  # both ranks die in epoch 2
    assert killed.returncode != 0
    assert f"exitcode  : -{int(signal.SIGKILL)}" in killed.stderr
    assert json.loads((run_dir / "last" / "checkpoint.json").read_text())["epoch"] == 1

    finished = run(train_command(config, "--resume", "auto", processes=2))
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"resumed from {run_dir / 'last'} at epoch 2" in (run_dir / "train.log").read_text()
    a, b = _weights(ddp_run), _weights(run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    info_a = json.loads((ddp_run / "last" / "checkpoint.json").read_text())
    info_b = json.loads((run_dir / "last" / "checkpoint.json").read_text())
    assert info_a["metrics"] == info_b["metrics"]
