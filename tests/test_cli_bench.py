"""`masra bench` as a command: each benchmark runs at toy sizes, prints its table and writes the documented
JSON layout (one row per variant / length, seconds and peak bytes)."""

from __future__ import annotations

import json

import pytest
import torch

from lab.bench.anchor_stand_in import forget_stand_in, write_stand_in
from masra.cli.main import main


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _bench(tmp_path, capsys, *args: str) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    assert main(["bench", "--threads", "1", "--repeats", "1", "--json", str(out), *args]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


@pytest.mark.slow
def test_bench_model_times_baseline_and_masra(tmp_path, capsys):
    result, printed = _bench(tmp_path, capsys, "model", "--batch-size", "2", "--clips", "16")
    assert result["bench"] == "model"
    rows = {row["variant"]: row for row in result["rows"]}
    assert set(rows) == {"baseline", "masra"}
    for row in rows.values():
        for phase in ("train_step", "inference"):
            assert row[phase]["seconds"] > 0
            assert "peak_bytes" in row[phase]
        assert row["variant"] in printed
    assert rows["masra"]["parameters"] > rows["baseline"]["parameters"]


@pytest.mark.slow
def test_bench_model_times_the_export_on_onnxruntime(tmp_path, capsys):
    result, printed = _bench(tmp_path, capsys, "model", "--batch-size", "2", "--clips", "16", "--runtime", "onnx",
                             "--variants", "masra")
    (row,) = result["rows"]
    assert row["runtime"] == "onnx" and row["train_step"] is None
    assert row["inference"]["seconds"] > 0 and row["inference_single"]["seconds"] > 0
    assert "masra (onnxruntime)" in printed and "onnxruntime's CPU provider" in " ".join(printed.split())


@pytest.mark.parametrize("args, field", [(["--jobs", "train_step"], "--jobs"), (["--amp", "bf16"], "--amp")])
def test_bench_model_on_onnxruntime_refuses_training_and_bf16(capsys, args, field):
    assert main(["bench", "model", "--runtime", "onnx", *args]) == 1
    assert field in capsys.readouterr().err


def test_bench_sora_banded_matches_dense(tmp_path, capsys):
    result, printed = _bench(tmp_path, capsys, "sora", "--lengths", "32", "64", "--band", "4")
    assert [row["clips"] for row in result["rows"]] == [32, 64]
    for row in result["rows"]:
        assert row["banded"]["seconds"] > 0 and row["dense"]["seconds"] > 0
        assert row["max_abs_diff"] < 1e-4  # the same attention, computed two ways
    assert "speed-up" in printed


def test_bench_data_reads_identical_arrays_from_both_layouts(tmp_path, capsys):
    result, printed = _bench(tmp_path, capsys, "data", "--videos", "6")
    (row,) = result["rows"]
    assert row["videos"] == 6 and row["identical"] is True
    assert row["npz"]["seconds"] > 0 and row["store"]["seconds"] > 0
    assert "packed store" in printed


def test_bench_on_a_missing_device_is_a_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["bench", "--device", "cuda", "sora", "--lengths", "8"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize("args, field", [(["--repeats", "0", "model"], "--repeats"),
                                         (["model", "--warmup", "-1"], "--warmup")])
def test_bench_refuses_no_timed_run_and_a_negative_warmup(capsys, args, field):
    assert main(["bench", *args, "--batch-size", "2", "--clips", "8"]) == 1
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err


def test_bench_floor_reports_each_step_and_its_products_alone(tmp_path, capsys):
    result, printed = _bench(tmp_path, capsys, "floor", "--batch-size", "2", "--clips", "8")
    assert result["bench"] == "floor"
    rows = {row["variant"]: row for row in result["rows"]}
    assert set(rows) == {"baseline", "masra"}
    for row in rows.values():
        assert row["products"] > 0 and row["gflop"] > 0
        assert row["step_seconds"] > 0 and row["products_seconds"] > 0
    assert "products alone" in printed


def test_bench_model_names_the_cpu_and_refuses_qd_detr_without_its_checkout(tmp_path, capsys):
    assert main(["bench", "model", "--variants", "qd-detr", "--jobs", "inference_single"]) == 1
    assert "--qd-detr-repo" in capsys.readouterr().err
    result, printed = _bench(tmp_path, capsys, "model", "--batch-size", "2", "--clips", "8", "--variants", "baseline",
                             "--jobs", "inference_single")
    assert printed.lstrip().startswith("CPU: ") and "torch ISA" in printed
    assert set(result["cpu"]) == {"model", "isa", "native_bf16", "amx"}
    (row,) = result["rows"]
    assert row["variant"] == "baseline" and row["train_step"] is None and row["inference_single"]["seconds"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("backbone, title", [("moment_detr", "Moment-DETR"), ("cg_detr", "CG-DETR")])
def test_bench_model_rows_on_a_backbone_against_its_own_anchor(tmp_path, capsys, backbone, title):
    """masra's rows on the backbone and the anchor's (a stand-in checkout: tests/lab/bench/anchor_stand_in.py),
    timed in one process, with the ratios to the anchor."""
    anchor = backbone.replace("_", "-")
    repo = write_stand_in(tmp_path / "checkout", anchor.replace("-", "_"))
    try:
        result, printed = _bench(tmp_path, capsys, "model", "--batch-size", "2", "--clips", "8", "--backbone",
                                 backbone, f"--{anchor}-repo", str(repo), "--jobs", "inference_single")
    finally:
        forget_stand_in(anchor.replace("-", "_"))
    assert [row["variant"] for row in result["rows"]] == ["baseline", "masra", anchor]
    for row in result["rows"]:
        assert row["backbone"] == backbone and row["inference_single"]["seconds"] > 0
        assert row["vs_anchor"]["inference_single"] == pytest.approx(
            row["inference_single"]["seconds"] / result["rows"][2]["inference_single"]["seconds"])
        assert row["variant"] in printed
    assert f"/ {title}" in printed and f"model.backbone {backbone}" in " ".join(printed.split())


@pytest.mark.parametrize("args, message", [
    (["--moment-detr-repo", "x"], "add --backbone moment_detr"),
    (["--backbone", "cg_detr", "--variants", "qd-detr"], "add --backbone qd_detr"),
    (["--backbone", "cg_detr", "--variants", "cg-detr"], "name both --cg-detr-repo and cg-detr"),
])
def test_bench_model_refuses_an_anchor_of_another_backbone_or_without_its_checkout(capsys, args, message):
    assert main(["bench", "model", *args, "--jobs", "inference_single"]) == 1
    assert message in capsys.readouterr().err
