"""A core install (``pip install masra``, no extras), seen through tests/core_only.py: the library's commands run
with every optional package refused and without importing masra's lab, priors, web, video or feature sides,
and each command that needs an extra stops with one line naming it. (.ci/wheel_check.sh checks the same on a
real install of the wheel in a fresh virtual environment.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from masra.config import save_config
from masra.data.jsonl import read_jsonl
from masra.extras import install_hint
from tiny_data import tiny_config

CORE_ONLY = Path(__file__).resolve().parents[1] / "core_only.py"
QD_DETR_CHECKPOINT = Path(__file__).resolve().parents[1] / "fixtures" / "qd_detr" / "model_best.ckpt"


def core_masra(*args: object, library: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``masra ARGS`` in a fresh process without the optional packages (``library``: nor masra's optional sides)."""
    command = [sys.executable, str(CORE_ONLY), *(["--library"] if library else []), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)


def succeeded(result: subprocess.CompletedProcess) -> bool:
    return result.returncode == 0 and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def core_run(tiny_paths, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("core")
    config = root / "tiny.yaml"
    save_config(tiny_config(tiny_paths, root / "unused"), config)
    run_dir = root / "run"
    result = core_masra("train", "--config", config, "--output-dir", run_dir, "--no-progress")
    assert succeeded(result), result.stderr
    return run_dir, result


def test_train_runs_and_says_once_that_tensorboard_logging_is_off(core_run):
    run_dir, result = core_run
    for folder in (run_dir / "last", run_dir / "best"):
        assert (folder / "model.safetensors").is_file() and (folder / "checkpoint.json").is_file()
    assert result.stderr.count("TensorBoard logging is off") == 1
    assert install_hint("tensorboard") in result.stderr
    assert "TensorBoard logging is off" in (run_dir / "train.log").read_text()
    assert not (run_dir / "tensorboard").exists()


def test_predict_and_evaluate_from_the_checkpoint(core_run, tmp_path):
    run_dir, _ = core_run
    preds = tmp_path / "test_preds.jsonl"
    result = core_masra("predict", "--checkpoint", run_dir / "best", "--split", "test", "--out", preds,
                        "--device", "cpu")
    assert succeeded(result), result.stderr
    rows = read_jsonl(preds)
    assert len(rows) == 4 and all(row["pred_relevant_windows"] and row["pred_saliency_scores"] for row in rows)

    metrics = tmp_path / "val_metrics.json"
    result = core_masra("evaluate", "--checkpoint", run_dir / "best", "--split", "val", "--out", metrics)
    assert succeeded(result), result.stderr
    assert json.loads(metrics.read_text()) == json.loads((run_dir / "best" / "metrics.json").read_text())


def test_config_and_convert_commands(tmp_path):
    result = core_masra("config", "show", "qvhighlights")
    assert succeeded(result) and "dataset: qvhighlights" in result.stdout, result.stderr
    result = core_masra("convert", "qd-detr", QD_DETR_CHECKPOINT, "--out", tmp_path / "converted")
    assert succeeded(result), result.stderr
    assert (tmp_path / "converted" / "last" / "model.safetensors").is_file()


def test_help_lists_every_command_without_the_optional_packages():
    result = core_masra("--help", library=False)
    assert succeeded(result), result.stderr
    for command in ("train", "predict", "demo", "ablate", "bench", "priors", "features", "serve"):
        assert command in result.stdout


@pytest.mark.parametrize(("args", "extra", "needed_by"), [
    (["predict", "--checkpoint", "RUN", "--split", "test", "--plots", "P"], "plots", "masra predict --plots"),
    (["predict", "--checkpoint", "RUN", "--video", "V.mp4", "--query", "q"], "video", "masra predict --video"),
    (["features", "extract", "--videos", "V", "--out", "O", "--encoder", "clip:E"], "video", "masra features extract"),
    (["features", "text", "--annotations", "A", "--out", "O", "--encoder", "clip:E"], "video", "masra features text"),
    (["priors", "generate", "--videos", "V", "--annotations", "A", "--out", "O", "--model", "M"], "priors",
     "masra priors generate"),
    (["priors", "encode", "--priors", "P", "--out", "O"], "priors", "masra priors encode"),
    (["serve", "--checkpoint", "RUN"], "web", "masra serve"),
    (["demo", "--out", "O"], "lab", "masra demo"),
    (["ablate", "--out", "O"], "lab", "masra ablate"),
    (["bench", "features"], "video", "masra bench features"),
])
def test_a_command_that_needs_an_extra_names_it_in_one_line(args, extra, needed_by, tmp_path):
    result = core_masra(*args, library=False, cwd=tmp_path)
    command = args[0]
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"masra {command}: error: {needed_by} needs the {extra} extra "), \
        result.stderr
    assert result.stderr.rstrip().endswith(install_hint(extra)) and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # stopped before writing anything
