"""What one video may cost the frame reader, decided from the stream's header before any frame is decoded.

Every entry point that reads frames (``masra predict --video``, ``features extract``, ``serve``, ``priors``)
goes through :func:`masra.video.frames.iter_frames`, so these limits hold for all of them:

- ``MAX_FRAME_PIXELS``: the decoded frame area (width x height). A larger stream is refused before decoding,
  and the decoder itself is opened with this ``max_pixels`` so a frame that grows mid-stream is refused too.
- ``MAX_ASPECT``: the frames handed on (RGB, resized) have a long side of at most ``MAX_ASPECT`` times their
  short side. Scaling the short side of a 2 x 6800 video to 224 would otherwise make it 224 x 761,600; beyond
  this ratio a frame is squeezed along its long side (the centre crop then sees a squeezed picture).
- ``MIN_CLIP_LENGTH``: the shortest clip, in seconds (a finite number); shorter clips would make the clip grid
  of a short file as long as memory allows.
- ``MAX_VIDEO_SECONDS``: the longest video stream (as decoded, not as claimed): two frames 10^9 s apart make
  a valid 1-KB file whose clip grid would not fit in memory.
- ``DURATION_TOLERANCE``: a container's claimed duration is used (as the anchors' extractors use it) only
  when it lies within this many seconds of where the video stream really ends; otherwise the real end is.
"""

from __future__ import annotations

import math

from masra.errors import MasraError

MAX_FRAME_PIXELS = 8192 * 4320  # 8K (DCI): 35.4 million pixels
MAX_ASPECT = 8
MIN_CLIP_LENGTH = 0.1  # seconds
DURATION_TOLERANCE = 0.5  # seconds
MAX_VIDEO_SECONDS = 24 * 3600


def frame_area_problem(width: int, height: int) -> str | None:
    """Why frames of ``width`` x ``height`` are refused, or None when they are within the cap."""
    if width * height > MAX_FRAME_PIXELS:
        return f"frames of {width}x{height} pixels exceed the reader's cap of {MAX_FRAME_PIXELS:,} pixels"
    return None


def _at_most_short_side(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side at most ``short_side`` (never upscaled), both even."""
    scale = min(1.0, short_side / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _exact_short_side(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side exactly ``short_side`` (up- or downscaled), the longer side
    truncated as the HERO extractor's ``int(long * size / short)``."""
    if height >= width:
        return short_side, max(short_side, int(height * short_side / width))
    return max(short_side, int(width * short_side / height)), short_side


def output_size(width: int, height: int, short_side: int, *, exact: bool) -> tuple[int, int]:
    """The size a ``width`` x ``height`` frame is resized to: its shorter side at most ``short_side``
    (``exact``: exactly ``short_side``, as the CLIP features' extractor), its longer side then capped at
    ``MAX_ASPECT`` times the shorter one."""
    size = (_exact_short_side if exact else _at_most_short_side)(width, height, short_side)
    short = min(size)
    if max(size) <= MAX_ASPECT * short:
        return size
    return (size[0], MAX_ASPECT * short) if size[1] > size[0] else (MAX_ASPECT * short, size[1])


def check_clip_length(value: float, field: str = "clip_length") -> float:
    """``value`` as a float when it is a finite number of seconds >= MIN_CLIP_LENGTH; else a MasraError."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise MasraError(f"must be a number of seconds, got {value!r}", field=field) from None
    if not math.isfinite(seconds) or seconds < MIN_CLIP_LENGTH:
        raise MasraError(f"must be a finite number of seconds >= {MIN_CLIP_LENGTH:g}, got {value!r}", field=field)
    return seconds
