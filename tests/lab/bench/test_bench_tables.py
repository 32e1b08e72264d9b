"""Each benchmark renders its own table; `masra bench` dispatches every subcommand through one mapping."""

from __future__ import annotations

import argparse

import pytest

from masra.cli import bench as bench_cli
from masra.lab.bench.matmul_floor import FloorRow, floor_table
from masra.lab.bench.measure import Measurement
from masra.lab.bench.model_step import ModelRow, model_table
from masra.lab.bench.sora import SoraRow, sora_table


def _model_rows(reference: bool, backbone: str = "qd_detr") -> list[ModelRow]:
    rows = []
    for variant, seconds in (("baseline", 0.2), ("masra", 0.3)):
        ratios = {"train_step": seconds / 0.1, "inference": seconds / 0.05, "inference_single": 1.5} if reference else {}
        rows.append(ModelRow(variant, 1000, Measurement(seconds, 2**20, seconds * 1.5, seconds / 2),
                             Measurement(seconds / 4, None), Measurement(seconds / 8, None), ratios,
                             backbone=backbone))
    return rows


def test_model_table_compares_with_the_baseline_and_adds_qd_detr_columns_only_with_a_reference() -> None:
    plain = model_table(_model_rows(reference=False))
    assert plain.columns == ["variant", "parameters", "train step", "user / sys", "vs baseline", "train peak",
                             "inference", "vs baseline", "infer peak", "1 query"]
    assert all(len(row) == 10 for row in plain.rows)
    assert plain.rows[0][:6] == ["baseline", "1,000", "200.0 ms", "0.30 / 0.10 s", "1.00x time", "1.0 MB"]
    assert plain.rows[1][4] == f"{0.3 / 0.2:.2f}x time" and plain.rows[1][8] == "n/a"
    referenced = model_table(_model_rows(reference=True))
    assert referenced.columns[10:] == ["step / QD-DETR", "infer / QD-DETR", "1 query / QD-DETR"]
    assert referenced.rows[1][10:] == [f"{0.3 / 0.1:.2f}x", f"{0.3 / 0.05:.2f}x", "1.50x"]
    assert plain.caption == referenced.caption and "peaks" in plain.caption and "user / sys" in plain.caption


@pytest.mark.parametrize("backbone, title", [("moment_detr", "Moment-DETR"), ("cg_detr", "CG-DETR")])
def test_model_table_names_the_backbone_and_compares_with_its_own_anchor(backbone, title) -> None:
    table = model_table(_model_rows(reference=True, backbone=backbone))
    assert table.columns[10:] == [f"step / {title}", f"infer / {title}", f"1 query / {title}"]
    assert table.rows[1][10:] == [f"{0.3 / 0.1:.2f}x", f"{0.3 / 0.05:.2f}x", "1.50x"]
    assert table.caption.startswith(f"baseline and masra on the {title} backbone (model.backbone {backbone})")
    assert not model_table(_model_rows(reference=False)).caption.startswith("baseline and masra on")


def test_model_table_shows_only_the_timed_jobs_and_no_baseline_ratio_without_a_baseline() -> None:
    masra = _model_rows(reference=False)[1]
    masra.inference = masra.inference_single = None
    table = model_table([masra])
    assert table.columns == ["variant", "parameters", "train step", "user / sys", "train peak"]
    assert table.rows == [["masra", "1,000", "300.0 ms", "0.45 / 0.15 s", "1.0 MB"]]


def test_floor_table_shows_the_share_of_the_step() -> None:
    rows = [FloorRow("baseline", 40, 1.25, 0.2, 0.05), FloorRow("masra", 60, 2.0, 0.4, 0.3, {"step": 2.0, "products": 1.5})]
    table = floor_table(rows)
    assert table.columns[-2:] == ["step / QD-DETR", "products alone / QD-DETR's step"]
    assert table.rows[0] == ["baseline", "40", "1.2", "200.0 ms", "50.0 ms", "25%"]
    assert table.rows[1][-3:] == ["75%", "2.00x", "1.50x"]


def test_sora_table_gives_speed_up_and_memory_saved() -> None:
    table = sora_table([SoraRow(300, Measurement(0.01, 2**20), Measurement(0.04, 2**22), 3e-7)])
    assert table.rows == [["300", "10.0 ms", "40.0 ms", "4.00x", "1.0 MB", "4.0 MB", "4.00x", "3.0e-07"]]


def test_every_bench_subcommand_has_an_entry_in_the_mapping() -> None:
    parser = argparse.ArgumentParser()
    bench_cli.register(parser.add_subparsers())
    bench_parser = parser._subparsers._group_actions[0].choices["bench"]
    names = set(bench_parser._subparsers._group_actions[0].choices)
    assert names == set(bench_cli.BENCHES)
