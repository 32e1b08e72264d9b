"""``masra bench onnx`` on the tests' exports (here rather than in tests/lab/bench: it reuses their exports)."""

from __future__ import annotations

import json

import pytest
import torch

from masra.cli.main import main

# The session's exports are made in the first test that uses them: torch.export of the MASRA model takes
# minutes on a loaded 2-core machine, more than pytest's default timeout (pyproject.toml).
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_onnx_times_both_back_ends_on_the_same_answers(exported, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--threads", "1", "--repeats", "1", "--json", str(out), "onnx", "--export",
                 str(exported.export), "--clips", "12", "--tokens", "4", "--batch-size", "3"]) == 0
    result = json.loads(out.read_text())
    assert result["bench"] == "onnx"
    assert [row["queries"] for row in result["rows"]] == [1, 3]
    for row in result["rows"]:
        assert row["torch_seconds"] > 0 and row["onnx_seconds"] > 0
        assert row["max_saliency_diff"] < 1e-4
    assert "onnxruntime" in capsys.readouterr().out
