"""Frames as ffmpeg (the anchors' extractors) and a browser give them: rotation metadata applied, and MPEG-TS
and x264-in-AVI files, whose seeking is unreliable, read as a sequential decode reads them."""

from __future__ import annotations

import numpy as np
import pytest
from made_videos import write_video
from reference_decode import sequential_frames

from masra.video.frames import center_crop, decode_clip_frames, grab_frames


def clip_reference(path, duration: float, clip_length: float) -> np.ndarray:
    """Per clip, the last frame strictly before its centre, resized (short side 224, bicubic) and cropped."""
    frames = sequential_frames(path)
    out = []
    for k in range(int(np.ceil(duration / clip_length))):
        centre = min((k + 0.5) * clip_length, duration)
        frame = [f for t, f in frames if t < centre - 1e-6][-1]
        w, h = frame.width, frame.height
        size = (224, int(h * 224 / w)) if h >= w else (int(w * 224 / h), 224)
        image = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="BICUBIC").to_image()
        out.append(center_crop(image, 224))
    return np.stack(out)


@pytest.mark.parametrize(("rotation", "turns"), [(-90, -1), (90, 1), (180, 2)])
def test_rotation_metadata_is_applied(tmp_path, rotation, turns):
    """A phone's portrait video is stored sideways with a display matrix (-90: turn clockwise to show it)."""
    path = write_video(tmp_path / "phone.mp4", rotation=rotation, seconds=1.0)
    (image,) = grab_frames(path, [0.5], short_side=10_000)
    frame = next(f for t, f in sequential_frames(path) if t >= 0.5 - 1e-6)
    upright = np.rot90(frame.to_ndarray(format="rgb24"), k=turns)  # np.rot90 turns counter-clockwise
    np.testing.assert_array_equal(np.asarray(image), upright)
    if rotation == -90:  # the stored top-left block shows at the top right
        assert image.size == (48, 64) and np.asarray(image)[2, -3].min() == 255
    if rotation == -90:  # and the clip frame (short side 224, centre crop) is cut from the upright picture
        crop = decode_clip_frames(path, 1.0, 1.0).frames[0]
        assert crop[10, 215].min() > 240 and crop[10, 10].max() < 100


@pytest.mark.parametrize("gop", [1000, 10])  # one keyframe in 10 s; a keyframe every second
def test_mpeg_ts_reads_as_a_sequential_decode(tmp_path, gop):
    path = write_video(tmp_path / "broadcast.ts", container_format="mpegts", gop=gop, seconds=10.0)
    clips = decode_clip_frames(path, 10.0, 2.0)
    np.testing.assert_array_equal(clips.frames, clip_reference(path, 10.0, 2.0))


def test_x264_in_avi_reads_as_a_sequential_decode(tmp_path):
    path = write_video(tmp_path / "camera.avi", container_format="avi", gop=20, seconds=10.0)
    clips = decode_clip_frames(path, 10.0, 2.0)
    np.testing.assert_array_equal(clips.frames, clip_reference(path, 10.0, 2.0))
