"""Matching annotation vids to video files, including QVHighlights segments of full YouTube videos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import digest

from masra.errors import MasraError
from masra.priors.backends.openai_compat import OpenAICompatBackend
from masra.priors.cache import read_cache
from masra.video.frames import grab_frames, jpeg_data_url
from masra.priors.generate import GenerateOptions, generate_priors
from masra.priors.videos import VideoJob, index_videos, match_videos, read_annotated_videos
from required import SHARED_DATA, require_path


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_folder_index_prefers_mp4_and_ignores_other_files(tmp_path):
    folder = tmp_path / "videos"
    for name in ("a.mkv", "a.mp4", "b.webm", "c.AVI", "notes.txt", "sub/d.mp4"):
        touch(folder / name)
    index = index_videos(folder)
    assert {k: v.name for k, v in index.items()} == {"a": "a.mp4", "b": "b.webm", "c": "c.AVI"}


def test_list_file_index(tmp_path):
    touch(tmp_path / "clips" / "x.mp4")
    absolute = touch(tmp_path / "elsewhere" / "y.mkv")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my videos\nclips/x.mp4\n\n{absolute}\n")
    assert {k: v for k, v in index_videos(listing).items()} == {"x": tmp_path / "clips" / "x.mp4", "y": absolute}
    listing.write_text("clips/x.mp4\nclips/missing.mp4\n")
    with pytest.raises(MasraError) as err:
        index_videos(listing)
    assert err.value.line == 2 and "missing.mp4" in str(err.value)
    listing.write_text("clips/readme.txt\n")
    with pytest.raises(MasraError, match="not a video file"):
        index_videos(listing)
    with pytest.raises(MasraError, match="no such folder"):
        index_videos(tmp_path / "nowhere")


def test_qvh_segments_map_to_full_videos(tmp_path):
    index = {"abc_def": tmp_path / "abc_def.mp4", "seg_0.0_150.0": tmp_path / "seg_0.0_150.0.mp4"}
    durations = {"abc_def_30.0_180.0": 150.0, "seg_0.0_150.0": 150.0, "zzz_0.0_150.0": 150.0, "../abc_def": 10.0}
    jobs, missing = match_videos(durations, index)
    assert jobs == [
        VideoJob("abc_def_30.0_180.0", index["abc_def"], 150.0, offset=30.0),  # the id itself contains '_'
        VideoJob("seg_0.0_150.0", index["seg_0.0_150.0"], 150.0, offset=0.0),  # a cut segment wins
    ]
    assert missing == ["zzz_0.0_150.0", "../abc_def"]  # a vid is only ever looked up, never joined to a path


def test_read_annotated_videos_real_qvh():
    path = require_path(SHARED_DATA / "qvhighlights" / "highlight_val_release.jsonl", "real annotations")
    annotated = read_annotated_videos(path)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert annotated.dataset == "qvhighlights"
    assert list(annotated.durations) == list(dict.fromkeys(r["vid"] for r in rows))
    for row in rows[:50]:
        assert annotated.durations[row["vid"]] >= row["duration"]


def test_offset_segment_frames_come_from_inside_the_full_video(chat_server, bikes, tmp_path):
    """A 4-s QVH-style segment starting 5 s into bikes.mp4: captions describe frames at 6 s and 8 s."""
    url, fake = chat_server
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "bikes_yt.mp4").symlink_to(bikes)
    ann = tmp_path / "ann.jsonl"
    ann.write_text(json.dumps({"qid": 1, "query": "a bike", "duration": 4, "vid": "bikes_yt_5.0_9.0",
                               "relevant_windows": [[0, 2]], "relevant_clip_ids": [0], "saliency_scores": [[1, 2, 3]]}))
    annotated = read_annotated_videos(ann)
    jobs, missing = match_videos(annotated.durations, index_videos(folder))
    assert not missing and jobs[0].offset == 5.0
    opts = GenerateOptions(clip_length=2.0, caption_batch=4, event_frames=2, caption_short_side=64,
                           event_short_side=64, show_progress=False)
    out = tmp_path / "p.jsonl"
    generate_priors(jobs, OpenAICompatBackend(url, "m"), out, opts)
    record = read_cache(out)["bikes_yt_5.0_9.0"]
    expected = [f"frame {digest(jpeg_data_url(im))}" for im in grab_frames(bikes, [6.0, 8.0], short_side=64)]
    assert record["captions"] == expected and record["n_clips"] == 2
    # the offset matters: the segment's first clip is not the file's first clip
    unshifted = grab_frames(bikes, [1.0], short_side=64)[0]
    assert not np.array_equal(np.asarray(unshifted), np.asarray(grab_frames(bikes, [6.0], short_side=64)[0]))
    assert all(0.0 <= e["start"] < e["end"] <= 4.0 for e in record["events"])
