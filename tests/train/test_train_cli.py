"""`masra train`, `masra evaluate --checkpoint` and `masra predict` end to end on tiny data (in-process)."""

from __future__ import annotations

import json

import pytest

from masra.cli.main import main
from masra.config import save_config
from masra.data.jsonl import read_jsonl
from tiny_data import tiny_config


@pytest.fixture(scope="module")
def cli_run(tiny_paths, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    config = root / "tiny.yaml"
    save_config(tiny_config(tiny_paths, root / "unused", "train.epochs=2"), config)
    run_dir = root / "run"
    assert main(["train", "--config", str(config), "--output-dir", str(run_dir), "--no-progress"]) == 0
    return config, run_dir


def test_train_writes_the_documented_run_folder(cli_run):
    _, run_dir = cli_run
    for name in ("config.yaml", "train.log", "tensorboard", "eval", "last", "best"):
        assert (run_dir / name).exists(), name
    for folder in (run_dir / "last", run_dir / "best"):
        assert sorted(p.name for p in folder.iterdir() if p.suffix != ".jsonl" and p.name != "metrics.json") == [
            "checkpoint.json", "config.yaml", "model.safetensors", "state.pt"]
    assert (run_dir / "best" / "val_preds.jsonl").is_file()
    assert list((run_dir / "tensorboard").iterdir())
    assert "epoch 2 eval val: MR-full-R1@0.5" in (run_dir / "train.log").read_text()


def test_train_refuses_a_non_empty_run_folder(cli_run, capsys):
    config, run_dir = cli_run
    assert main(["train", "--config", str(config), "--output-dir", str(run_dir), "--no-progress"]) == 1
    assert "run folder is not empty" in capsys.readouterr().err


def test_evaluate_checkpoint_command(cli_run, tmp_path):
    _, run_dir = cli_run
    out = tmp_path / "val_metrics.json"
    args = ["evaluate", "--checkpoint", str(run_dir / "best"), "--split", "val", "--out", str(out)]
    assert main(args) == 0
    assert json.loads(out.read_text()) == json.loads((run_dir / "best" / "metrics.json").read_text())
    assert main(args) == 1  # refuses to overwrite
    assert main(args + ["--force"]) == 0


def test_predict_command_with_plots(cli_run, tiny_paths, tmp_path, capsys):
    _, run_dir = cli_run
    out, plots = tmp_path / "test_preds.jsonl", tmp_path / "plots"
    args = ["predict", "--checkpoint", str(run_dir / "best"), "--split", "test", "--out", str(out),
            "--plots", str(plots), "--plot-limit", "2", "--device", "cpu"]
    assert main(args) == 0
    rows = read_jsonl(out)
    assert len(rows) == 4 and all(row["pred_relevant_windows"] for row in rows)
    assert not (tmp_path / "test_preds_metrics.json").exists()  # the test split has no labels
    pngs = sorted(plots.iterdir())
    assert [p.name for p in pngs] == sorted(f"qid{row['qid']}.png" for row in rows[:2])
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    assert main(args) == 1
    assert "exists" in capsys.readouterr().err

    val_out = tmp_path / "val_preds.jsonl"
    assert main(["predict", "--checkpoint", str(run_dir / "best"), "--split", "val", "--out", str(val_out)]) == 0
    metrics = json.loads((tmp_path / "val_preds_metrics.json").read_text())
    assert metrics == json.loads((run_dir / "best" / "metrics.json").read_text())
    assert read_jsonl(val_out) == read_jsonl(run_dir / "best" / "val_preds.jsonl")

    # Any annotation file of the dataset works too; here the val file again, so the same predictions.
    file_out = tmp_path / "file_preds.jsonl"
    assert main(["predict", "--checkpoint", str(run_dir / "best"), "--annotations", str(tiny_paths["val"]),
                 "--out", str(file_out)]) == 0
    assert read_jsonl(file_out) == read_jsonl(val_out)


def test_resume_with_the_run_folder_only(cli_run):
    _, run_dir = cli_run
    # The run's own config.yaml is used; an override extends the run by one epoch.
    assert main(["train", "--resume", str(run_dir), "--set", "train.epochs=3", "--no-progress"]) == 0
    assert json.loads((run_dir / "last" / "checkpoint.json").read_text())["epoch"] == 3
