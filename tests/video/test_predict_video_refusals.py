"""`masra predict --video` under bad input: each refusal is one line naming the file or option, and nothing is
written (no PNG of an earlier query, no replaced folder or file masra did not create)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_clip import make_tiny_clip

from masra.cli.main import main


@pytest.fixture(scope="module")
def clip_14(tmp_path_factory):
    """A small CLIP of the widths the converted QD-DETR fixture takes (14-d clips, 10-d query tokens)."""
    return make_tiny_clip(tmp_path_factory.mktemp("clip_14") / "clip", projection_dim=14, text_width=10)


@pytest.fixture
def predict(converted_qd_run, clip_14, bikes, capsys):
    """``predict(*args)`` → (exit status, stderr) of `masra predict --video bikes.mp4 ... *args`."""
    def run(*args: str) -> tuple[int, str]:
        status = main(["predict", "--checkpoint", str(converted_qd_run), "--video", str(bikes), "--encoder",
                       f"clip:{clip_14}", "--device", "cpu", *args])
        return status, capsys.readouterr().err
    return run


def one_line(err: str) -> str:
    last = err.strip().splitlines()[-1]
    assert last.startswith("masra predict: error: ") and "Traceback" not in err, err
    return last


def test_a_folder_as_out_is_never_replaced(predict, tmp_path):
    out = tmp_path / "preds.jsonl"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    status, err = predict("--query", "a bike", "--out", str(out), "--force")
    assert status == 1 and one_line(err).endswith(f"{out}: exists and is not a file; masra replaces only files")
    assert (out / "mine.txt").read_text() == "keep"
    assert not (tmp_path / "preds_plots").exists()


def test_a_file_as_plots_is_never_replaced(predict, tmp_path):
    plots = tmp_path / "plots.png"
    plots.write_text("keep")
    status, err = predict("--query", "a bike", "--out", str(tmp_path / "p.jsonl"), "--plots", str(plots), "--force")
    assert status == 1 and one_line(err).endswith(f"{plots}: exists and is not a folder")
    assert plots.read_text() == "keep" and not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_a_queries_file_that_is_not_utf8_is_named(predict, tmp_path, suffix):
    queries = tmp_path / f"q{suffix}"
    queries.write_bytes(b'{"query": "caf\xe9"}\n' if suffix == ".jsonl" else b"caf\xe9 au lait\n")
    status, err = predict("--queries", str(queries), "--out", str(tmp_path / "p.jsonl"))
    assert status == 1 and f"{queries}:" in one_line(err) and "UTF-8" in one_line(err)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_a_device_this_machine_lacks_is_one_line(predict, tmp_path):
    status, err = predict("--query", "a bike", "--out", str(tmp_path / "p.jsonl"), "--device", "mps")
    assert status == 1
    assert err == "masra predict: error: field '--device': mps is not available on this machine\n"


@pytest.mark.parametrize(("second", "message"), [
    ({"qid": "../escape", "query": "b"}, "refusing file name '../escape'"),
    ({"qid": 1, "query": "b"}, "duplicate qid 1 (first on line 1)"),
    ({"qid": "1", "query": "b"}, "qid '1' and qid 1 on line 1 name the same files"),
    ({"qid": [1, 2], "query": "b"}, "qid [1, 2] is not an int or a string"),
    ({"qid": 1.5, "query": "b"}, "qid 1.5 is not an int or a string"),
    ({"qid": True, "query": "b"}, "qid True is not an int or a string"),
])
def test_a_bad_second_query_leaves_nothing_written(predict, tmp_path, second, message):
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"qid": 1, "query": "a bike"}) + "\n" + json.dumps(second) + "\n")
    out = tmp_path / "out" / "p.jsonl"
    status, err = predict("--queries", str(queries), "--out", str(out))
    assert status == 1 and message in one_line(err) and f"{queries}:2:" in one_line(err)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").rglob("*")) == []
