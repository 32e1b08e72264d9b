"""`masra ablate` as a command: real (short) training runs on the tiny synthetic dataset, the tables it
writes and prints, a rerun that trains nothing, and its table recorded and rendered by `masra results`."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from conftest import TINY_TRAIN, TINY_VAL

from masra.cli.main import main
from masra.lab.demo.ablation import PROTOCOL_OVERRIDES
from masra.lab.demo.training import KEY_METRICS
from masra.lab.results import HEADLINE_END, HEADLINE_START

COMMAND = ["--seeds", "0", "1", "--epochs", "1", "--variants", "baseline", "all", "--train-rows", str(TINY_TRAIN),
           "--val-rows", str(TINY_VAL), "--workers", "1"]


@pytest.mark.slow
def test_ablate_trains_each_variant_writes_and_prints_the_table_then_resumes(tiny_dataset_copy, tmp_path, capsys):
    out = tiny_dataset_copy.parent
    assert main(["ablate", "--out", str(out), *COMMAND]) == 0
    printed = capsys.readouterr().out
    table = json.loads((out / "ablation.json").read_text())
    assert [row["variant"] for row in table["variants"]] == ["baseline", "all"]
    for row in table["variants"]:
        assert set(KEY_METRICS) <= set(row["last"]) and set(KEY_METRICS) <= set(row["best"])
        assert all(0.0 <= row["last"][key]["mean"] <= 100.0 for key in KEY_METRICS)
        assert [run["last"]["epoch"] for run in row["runs"]] == [1, 1]
        assert row["variant"] in printed
    assert "baseline" in table["variants"][1]["paired"]
    run_config = yaml.safe_load((out / "runs" / "all" / "seed1" / "config.yaml").read_text())
    protocol = dict(item.split("=") for item in PROTOCOL_OVERRIDES)
    assert run_config["train"]["lr_schedule"] == protocol["train.lr_schedule"]
    assert run_config["train"]["warmup_epochs"] == float(protocol["train.warmup_epochs"])
    metrics_table = (out / "ablation.md").read_text().split("\n\n")[2]  # caption, legend, then the table
    assert metrics_table.count("\n| baseline") == 1 and metrics_table.count("\n| all") == 1
    assert KEY_METRICS[0] in printed

    started = time.monotonic()
    assert main(["ablate", "--out", str(out), *COMMAND]) == 0
    assert time.monotonic() - started < 30  # nothing retrained: every run is finished
    assert json.loads((out / "ablation.json").read_text()) == table

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "README.md").write_text(f"# x\n{HEADLINE_START}\n{HEADLINE_END}\n")
    assert main(["results", "--root", str(checkout), "add-ablation", str(out), "--name", "tiny",
                 "--command", "masra ablate " + " ".join(COMMAND), "--machine", "test"]) == 0
    entry = checkout / "docs" / "results" / "ablations" / "tiny"
    assert not (entry / "runs").exists() and not (entry / "data").exists()
    assert main(["results", "--root", str(checkout)]) == 0
    assert main(["results", "--root", str(checkout), "--check"]) == 0
    headline = (checkout / "README.md").read_text()
    assert "| tiny | planted | 1 | 2 |" in headline
