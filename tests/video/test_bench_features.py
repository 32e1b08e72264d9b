"""`masra bench features` runs end to end and reports consistent counts (no timing asserted)."""

from __future__ import annotations

import json

import av

from masra.lab.bench.features import make_long_video
from masra.cli.main import main
from masra.video.frames import clip_count, probe_video


def test_bench_reports_decode_and_encode_throughput(bikes, tiny_clip, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--threads", "1", "--json", str(out), "features", "--video", str(bikes),
                 "--encoder", f"clip:{tiny_clip}", "--batch-size", "2"]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["frames"] == 250 and row["clips"] == clip_count(probe_video(bikes).duration, 2.0) == 5
    assert all(row[k] > 0 for k in ("all_frames_seconds", "clip_frames_seconds", "encode_seconds", "extract_seconds"))
    assert "bound by" in capsys.readouterr().out


def test_default_video_is_long_720p_h264_with_a_keyframe_every_2_s(tmp_path):
    video = make_long_video(tmp_path / "long.mp4", seconds=12.0)
    info = probe_video(video)
    assert (info.width, info.height) == (1280, 720) and info.duration >= 12.0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        keys = [float(p.pts * stream.time_base) for p in container.demux(stream) if p.is_keyframe]
    assert stream.codec_context.name == "h264" and max(b - a for a, b in zip(keys, keys[1:])) <= 2.0 + 1e-6
