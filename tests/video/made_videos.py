"""Tiny videos written by the tests with PyAV: every frame shows its own index (a grey level and a bar), so a
test can tell which frame a reader returned; options give the containers, codecs and metadata that real
files carry (one keyframe, B-frames in AVI, rotation, extreme shapes)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def frame_picture(index: int, width: int, height: int) -> np.ndarray:
    """[height, width, 3] uint8: grey level 8 * index, with a white block in the top-left quarter."""
    picture = np.full((height, width, 3), (8 * index) % 256, dtype=np.uint8)
    picture[: max(1, height // 4), : max(1, width // 4)] = 255
    return picture


def write_video(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: int = 10,
    width: int = 64,
    height: int = 48,
    codec: str = "libx264",
    container_format: str | None = None,
    gop: int | None = None,
    rotation: int | None = None,
    container_options: dict[str, str] | None = None,
    noise: bool = False,
) -> Path:
    """Write ``seconds`` x ``fps`` frames (frame_picture, or random pixels with ``noise``) and return ``path``.
    ``rotation``: the display matrix's counter-clockwise degrees (a phone's portrait video is -90)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=container_format, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop is not None:
            stream.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index in range(round(seconds * fps)):
            picture = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) if noise
                       else frame_picture(index, width, height))
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
