"""The decoder beneath the frame reader: a video stream opened within the limits (:mod:`masra.video.limits`),
frames timed as ffmpeg times them, damaged packets skipped, and frames turned upright.

- Timing: ffmpeg's best-effort timestamp (libavcodec's ``guess_correct_pts``): a frame's own pts, unless the
  pts have gone backwards more often than the dts, then its dts (x264 in AVI: the container stores no pts,
  and the ones the parser guesses come out of the decoder shuffled); never earlier than the frame before.
- Seeking: only mp4/mov and Matroska/WebM carry an index that makes a seek land where it is asked to; every
  other container (MPEG-TS, AVI, ...) is decoded sequentially from its start.
- Rotation: the display matrix (a phone's portrait video is stored sideways) is applied, as ffmpeg's
  autorotation and browsers do; flips in the matrix are not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction

import av
from PIL import Image

from masra.video import limits

# Containers whose index makes seeking exact (PyAV's format names are comma-separated lists).
SEEKABLE_FORMATS = frozenset({"mov", "mp4", "matroska", "webm"})


class VideoDecodeError(Exception):
    """A video could not be opened or decoded; the message says why (recorded as the video's failure)."""


def open_stream(container: av.container.InputContainer, name: str) -> av.VideoStream:
    """The first video stream, its frame area checked and its decoder capped (``max_pixels``) before any
    frame is decoded."""
    if not container.streams.video:
        raise VideoDecodeError(f"{name}: no video stream")
    stream = container.streams.video[0]
    too_large = limits.frame_area_problem(stream.codec_context.width, stream.codec_context.height)
    if too_large:
        raise VideoDecodeError(f"{name}: {too_large}")
    stream.codec_context.options = {"max_pixels": str(limits.MAX_FRAME_PIXELS)}
    stream.thread_type = "AUTO"
    return stream


def time_base_of(stream: av.VideoStream) -> Fraction:
    return stream.time_base or Fraction(1, 1_000_000)


def start_of(stream: av.VideoStream) -> float:
    """The stream's first timestamp in seconds (0 when the container does not say)."""
    return float(stream.start_time * time_base_of(stream)) if stream.start_time is not None else 0.0


def is_seekable(container: av.container.InputContainer) -> bool:
    return bool(SEEKABLE_FORMATS & set(container.format.name.split(",")))


class FrameClock:
    """Times of the frames of one decode run (restart it after a seek, as the decoder is flushed)."""

    def __init__(self, time_base: Fraction) -> None:
        self.time_base = time_base
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None
        self.last_time = -math.inf

    def _best_effort(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        elif pts is not None:
            self.last_dts = pts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        elif dts is not None:
            self.last_pts = dts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        return dts

    def time(self, frame: av.VideoFrame) -> float:
        """The frame's time in seconds (not earlier than the previous frame's; 0 for an untimed first frame)."""
        stamp = self._best_effort(frame.pts, frame.dts)
        if stamp is not None:
            time = float(stamp * self.time_base)
        else:
            time = self.last_time if self.last_time > -math.inf else 0.0
        self.last_time = max(self.last_time, time)
        return self.last_time


def decode_timed(container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[tuple[float, av.VideoFrame]]:
    """(time, frame) from the current read position on; a packet the decoder rejects (damaged or cut off)
    is skipped, as ffmpeg skips it."""
    clock = FrameClock(time_base_of(stream))
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError:
            continue
        for frame in frames:
            yield clock.time(frame), frame


def upright_image(frame: av.VideoFrame, short_side: int, *, exact: bool) -> Image.Image:
    """The frame as RGB, resized by ``limits.output_size`` (of the picture as shown) and turned upright by
    its display matrix. ``exact``: bicubic, as the CLIP features' extractor (ffmpeg's ``scale``)."""
    turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise quarter turns
    shown = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
    width, height = limits.output_size(*shown, short_side, exact=exact)
    if turns % 2:
        width, height = height, width
    image = frame.reformat(width=width, height=height, format="rgb24",
                           interpolation="BICUBIC" if exact else None).to_image()
    if turns:
        image = image.transpose((Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                                 Image.Transpose.ROTATE_270)[turns - 1])
    return image
