"""`masra ablate` as a command: real (short) training runs on the tiny synthetic dataset, the tables it
writes and prints, and a rerun that trains nothing."""

from __future__ import annotations

import json
import time

import pytest
from conftest import TINY_TRAIN, TINY_VAL

from masra.cli.main import main
from masra.lab.demo.training import KEY_METRICS

COMMAND = ["--seeds", "0", "--epochs", "1", "--variants", "baseline", "sora", "--train-rows", str(TINY_TRAIN),
           "--val-rows", str(TINY_VAL), "--workers", "1"]


@pytest.mark.slow
def test_ablate_trains_each_variant_writes_and_prints_the_table_then_resumes(tiny_dataset_copy, capsys):
    out = tiny_dataset_copy.parent
    assert main(["ablate", "--out", str(out), *COMMAND]) == 0
    printed = capsys.readouterr().out
    table = json.loads((out / "ablation.json").read_text())
    assert [row["variant"] for row in table["variants"]] == ["baseline", "sora"]
    for row in table["variants"]:
        assert set(KEY_METRICS) <= set(row["metrics"])
        assert all(0.0 <= row["metrics"][key]["mean"] <= 100.0 for key in KEY_METRICS)
        assert row["variant"] in printed
    metrics_table = (out / "ablation.md").read_text().split("\n\n")[1]  # the first table; diagnostics follow
    assert metrics_table.count("\n| baseline") == 1 and metrics_table.count("\n| sora") == 1
    assert KEY_METRICS[0] in printed

    started = time.monotonic()
    assert main(["ablate", "--out", str(out), *COMMAND]) == 0
    assert time.monotonic() - started < 30  # nothing retrained: both runs are finished
    assert json.loads((out / "ablation.json").read_text()) == table
