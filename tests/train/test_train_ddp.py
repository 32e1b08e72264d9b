"""A real 2-process DDP run on CPU (gloo) through torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from safetensors.torch import load_file

from masra.config import save_config
from tiny_data import tiny_config


def test_torchrun_two_processes_on_cpu(tiny_paths, tmp_path):
    run_dir = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(tiny_paths, run_dir, "train.epochs=2", "train.eval_every=1"), config)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "masra.cli.main", "train", "--config", str(config), "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    info = json.loads((run_dir / "last" / "checkpoint.json").read_text())
    assert info["epoch"] == 2
    log = (run_dir / "train.log").read_text()
    assert "x2;" in log  # both processes joined one run
    assert log.count("epoch 2 lr") == 1  # only rank 0 writes
    assert (run_dir / "eval" / "epoch_0002_val_preds.jsonl").is_file()
    # Both ranks' RNG states are kept, so a resume under the same world size continues each stream.
    import torch

    state = torch.load(run_dir / "last" / "state.pt", weights_only=True)
    assert len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    weights = load_file(str(run_dir / "last" / "model.safetensors"))
    assert not any(key.startswith("module.") for key in weights)  # saved unwrapped, loadable without DDP
