"""The container's claim is not the video: the duration grounded and extracted is the one that decodes, and
the clip length is a finite number of seconds no shorter than MIN_CLIP_LENGTH."""

from __future__ import annotations

import json
import logging
import struct
from fractions import Fraction

import numpy as np
import pytest
from made_videos import write_video

from masra.cli.main import main
from masra.errors import MasraError
from masra.features.encoder import ClipEncoder
from masra.features.video import extract_video, video_duration
from masra.video.frames import measure_duration, probe_video


@pytest.fixture(scope="module")
def encoder(tiny_clip) -> ClipEncoder:
    return ClipEncoder.load(f"clip:{tiny_clip}")


def lying_mkv(path, claimed_seconds: float):
    """A 2-s Matroska file whose header claims ``claimed_seconds`` (its Duration element, in milliseconds)."""
    write_video(path, seconds=2.0, container_format="matroska")
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")  # EBML id of Duration, an 8-byte float
    data[at + 3 : at + 11] = struct.pack(">d", claimed_seconds * 1000)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("claimed", [2_000.0, 1e9])
def test_a_claimed_duration_past_the_stream_is_replaced_by_the_real_one(tmp_path, encoder, claimed, caplog):
    path = lying_mkv(tmp_path / "liar.mkv", claimed)
    assert probe_video(path).duration == pytest.approx(claimed)
    with caplog.at_level(logging.WARNING, logger="masra.features"):
        video = extract_video(encoder, path, 2.0)
    assert video.duration == pytest.approx(2.0) and video.features.shape[0] == 1
    assert f"liar.mkv: the container says {claimed:.1f} s but the video stream decodes to 2.0 s" in caplog.text


def test_a_cut_faststart_mp4_ends_where_its_data_ends(tmp_path, encoder, caplog):
    whole = write_video(tmp_path / "whole.mp4", seconds=10.0, gop=10, noise=True,
                        container_options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.3)])
    assert probe_video(cut).duration == pytest.approx(10.0)
    real = measure_duration(cut)
    assert 1.0 < real < 4.0
    with caplog.at_level(logging.WARNING, logger="masra.features"):
        video = extract_video(encoder, cut, 0.5)
    assert video.duration == pytest.approx(real) and len(video.features) == int(np.ceil(real / 0.5 - 1e-9))
    assert "cut.mp4: the container says 10.0 s" in caplog.text
    # noise frames are all different: no clip repeats the frame of the one before
    assert all(not np.array_equal(a, b) for a, b in zip(video.features, video.features[1:]))


def test_an_honest_container_keeps_its_duration(tmp_path):
    path = write_video(tmp_path / "fine.mp4", seconds=3.0)
    assert measure_duration(path) == pytest.approx(3.0)
    assert video_duration(path) == probe_video(path).duration


@pytest.mark.parametrize("value", ["nan", "inf", "1e-9", "0", "-2", "0.05"])
def test_clip_length_must_be_finite_and_at_least_the_minimum(tmp_path, tiny_clip, value, capsys):
    path = write_video(tmp_path / "fine.mp4", seconds=1.0)
    args = ["features", "extract", "--videos", str(tmp_path), "--out", str(tmp_path / "f"),
            "--encoder", f"clip:{tiny_clip}", "--clip-length", value, "--no-progress"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "field '--clip-length': must be a finite number of seconds >= 0.1" in err
    assert not (tmp_path / "f").exists()
    with pytest.raises(MasraError, match="clip_length"):
        extract_video(ClipEncoder.load(f"clip:{tiny_clip}"), path, float(value))


def test_extraction_json_records_a_finite_clip_length(tmp_path, tiny_clip):
    write_video(tmp_path / "fine.mp4", seconds=1.0)
    args = ["features", "extract", "--videos", str(tmp_path), "--out", str(tmp_path / "f"),
            "--encoder", f"clip:{tiny_clip}", "--clip-length", "0.5", "--no-progress"]
    assert main(args) == 0
    record = json.loads((tmp_path / "f" / "extraction.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert record["clip_length"] == 0.5


def test_a_stream_longer_than_the_cap_is_refused(tmp_path, encoder):
    """Two frames 10^9 s apart: a valid 1-KB file whose clip grid would not fit in memory."""
    import av

    path = tmp_path / "gap.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for pts in (0, 10**10):  # in tenths of a second
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert measure_duration(path) > 1e9
    with pytest.raises(MasraError, match=r"gap.mkv: its video stream lasts 1000000000.\d s; masra reads videos of "
                                         r"at most 86400 s"):
        extract_video(encoder, path, 2.0)
