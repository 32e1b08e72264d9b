"""The frame reader's budget, checked before any frame is decoded: the decoded frame area, and an output size
whose long side stays within MAX_ASPECT x its short side however elongated the video is."""

from __future__ import annotations

import pytest
from made_videos import write_video

from masra.video import limits
from masra.video.frames import VideoDecodeError, decode_clip_frames, grab_frames


@pytest.fixture(scope="module")
def thin_video(tmp_path_factory):
    """2 x 6800 H.264: the short-side-to-224 rule alone would ask for 224 x 761,600 RGB frames."""
    return write_video(tmp_path_factory.mktemp("thin") / "thin.mp4", width=2, height=6800, seconds=1.0)


def test_an_extreme_aspect_ratio_is_squeezed_to_the_cap(thin_video):
    (clip_sized,) = grab_frames(thin_video, [0.5], short_side=224, exact_short_side=True)
    assert clip_sized.size == (224, limits.MAX_ASPECT * 224)
    (thumbnail,) = grab_frames(thin_video, [0.5], short_side=336)
    assert thumbnail.size == (2, limits.MAX_ASPECT * 2)  # never upscaled; the long side capped all the same
    clips = decode_clip_frames(thin_video, 1.0, 0.5)
    assert clips.frames.shape == (2, 224, 224, 3)


def test_ordinary_shapes_keep_the_anchors_sizes():
    assert limits.output_size(640, 272, 224, exact=True) == (int(640 * 224 / 272), 224)  # HERO's truncation
    assert limits.output_size(1080, 1920, 224, exact=True) == (224, int(1920 * 224 / 1080))
    assert limits.output_size(640, 272, 136, exact=False) == (320, 136)
    assert limits.output_size(176, 144, 336, exact=False) == (176, 144)


def test_a_frame_larger_than_the_area_cap_is_refused_before_decoding(thin_video, monkeypatch):
    monkeypatch.setattr(limits, "MAX_FRAME_PIXELS", 2 * 6800 - 1)
    with pytest.raises(VideoDecodeError, match=r"thin.mp4: frames of 2x6800 pixels exceed the reader's cap"):
        grab_frames(thin_video, [0.5])
