"""Checkpoint folders, atomic replacement, RNG capture and the run-folder rules."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from masra.config import Config
from masra.errors import MasraError
from masra import checkpoint as ckpt
from masra.train.run_dir import holds_only_run_artifacts, last_checkpoint, prepare_new_run
from masra.train.seeding import capture_rng_state, restore_rng_state


def _save(folder, model, epoch=1):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": [capture_rng_state()], "progress": {"epoch": epoch}}
    return ckpt.save_checkpoint(folder, model=model, cfg=Config(), dims=ckpt.ModelDims(5, 4, None, [3]),
                                state=state, info={"epoch": epoch})


def test_round_trip_loads_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    folder = _save(tmp_path / "last", model)
    fresh = torch.nn.Linear(3, 2)
    ckpt.load_weights(folder, fresh)
    assert torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias)
    state = ckpt.load_state(folder)  # torch.load(..., weights_only=True) inside
    assert state["progress"] == {"epoch": 1}
    assert state["optimizer"]["state"][0]["exp_avg"].shape == (2, 3)
    cfg, dims, info = ckpt.read_checkpoint_info(folder)
    assert dims == ckpt.ModelDims(5, 4, None, [3]) and info["epoch"] == 1 and isinstance(cfg, Config)


def test_weights_of_another_architecture_are_refused(tmp_path):
    folder = _save(tmp_path / "last", torch.nn.Linear(3, 2))
    with pytest.raises(MasraError, match="do not match"):
        ckpt.load_weights(folder, torch.nn.Linear(3, 4))


def test_interrupted_swap_falls_back_to_the_old_copy(tmp_path):
    model = torch.nn.Linear(3, 2)
    _save(tmp_path / "last", model, epoch=1)
    # A crash between "last -> last.old" and "last.tmp -> last" leaves only last.old (and a stale tmp).
    (tmp_path / "last").rename(tmp_path / "last.old")
    (tmp_path / "last.tmp").mkdir()
    (tmp_path / "last.tmp" / "model.safetensors").write_bytes(b"half-written")
    assert last_checkpoint(tmp_path) == tmp_path / "last.old"
    assert ckpt.find_checkpoint(tmp_path) == tmp_path / "last.old"
    assert ckpt.load_state(tmp_path)["progress"]["epoch"] == 1
    _save(tmp_path / "last", model, epoch=2)  # the next save cleans both leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert ckpt.load_state(tmp_path / "last")["progress"]["epoch"] == 2


def test_find_checkpoint_names_the_folder(tmp_path):
    with pytest.raises(MasraError, match=str(tmp_path)):
        ckpt.find_checkpoint(tmp_path)


def test_rng_state_round_trip_through_torch_load(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    torch.save(capture_rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.normal(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), np.random.normal(), torch.rand(3))
    assert again[:2] == expected[:2] and torch.equal(again[2], expected[2])


def test_new_run_refuses_non_empty_folder_and_force_removes_only_run_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").write_text("old")
    (run / "last").mkdir()
    (run / "notes.txt").write_text("mine")
    assert not holds_only_run_artifacts(run)
    with pytest.raises(MasraError, match="not empty"):
        prepare_new_run(run, force=False)
    prepare_new_run(run, force=True)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    (run / "notes.txt").unlink()
    (run / "train.log").write_text("partial run, killed before its first checkpoint")
    assert holds_only_run_artifacts(run)
