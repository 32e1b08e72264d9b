"""Leftovers of an interrupted checkpoint swap are cleaned on the next resume, and a damaged checkpoint
stops ``masra train --resume`` with an error naming the file (no traceback)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
import torch

from masra.cli.main import main
from masra.config import save_config
from masra.train.trainer import train
from tiny_data import tiny_config

ONE_EPOCH = ("train.epochs=1", "data.eval_path=")


def _finished_run(tiny_paths: dict[str, Path], run_dir: Path) -> Path:
    train(tiny_config(tiny_paths, run_dir, *ONE_EPOCH), progress=False)
    return run_dir


def test_last_old_left_by_a_kill_after_the_final_epoch_is_cleaned_on_resume(tiny_paths, tmp_path: Path) -> None:
    run_dir = _finished_run(tiny_paths, tmp_path / "run")
    weights = (run_dir / "last" / "model.safetensors").read_bytes()
    # Killed after "last.tmp -> last" but before "rm -r last.old": both copies are complete.
    shutil.copytree(run_dir / "last", run_dir / "last.old")
    (run_dir / "last.tmp").mkdir()
    (run_dir / "last.tmp" / "model.safetensors").write_bytes(b"half")

    again = train(tiny_config(tiny_paths, run_dir, *ONE_EPOCH), resume="auto", progress=False)

    assert again.epochs_done == 1 and again.step_losses == []
    assert not (run_dir / "last.old").exists() and not (run_dir / "last.tmp").exists()
    assert (run_dir / "last" / "model.safetensors").read_bytes() == weights


def test_last_old_is_kept_while_it_is_the_only_complete_copy(tiny_paths, tmp_path: Path) -> None:
    run_dir = _finished_run(tiny_paths, tmp_path / "run")
    # Killed between "last -> last.old" and "last.tmp -> last": last.old is the resume point.
    (run_dir / "last").rename(run_dir / "last.old")
    again = train(tiny_config(tiny_paths, run_dir, *ONE_EPOCH), resume="auto", progress=False)
    assert again.epochs_done == 1 and again.step_losses == []
    assert (run_dir / "last.old" / "state.pt").is_file()


@pytest.mark.parametrize("damage", ["truncate", "pickle", "incomplete"])
def test_resume_from_a_damaged_state_names_the_file(tiny_paths, tmp_path: Path, capsys, damage: str) -> None:
    run_dir = _finished_run(tiny_paths, tmp_path / "run")
    state = run_dir / "last" / "state.pt"
    if damage == "truncate":
        state.write_bytes(state.read_bytes()[:1000])
    elif damage == "pickle":
        torch.save({"format_version": 1, "payload": argparse.Namespace(run="rm -rf /")}, state)
    else:
        saved = torch.load(state, weights_only=True)
        del saved["optimizer"]
        torch.save(saved, state)
    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(tiny_paths, run_dir, "train.epochs=2", "data.eval_path="), config)
    code = main(["train", "--config", str(config), "--resume", "auto", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and f"{state}: " in err and "Traceback" not in err
