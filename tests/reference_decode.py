"""The reference the frame reader is tested against: a sequential decode of every frame, each timed as
ffmpeg's best-effort timestamp comes out on whole files: its pts when the pts increase through the file,
else its dts (AVI stores no pts: x264's or MPEG-4's B-frames leave the guessed ones shuffled), and for the
frames flushed at the end, which carry no dts, one frame after the one before."""

from __future__ import annotations

from pathlib import Path

import av


def sequential_frames(path: str | Path) -> list[tuple[float, av.VideoFrame]]:
    """(seconds from the stream start, frame) for every frame, in decoding order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        start, time_base = stream.start_time or 0, stream.time_base
    pts = [f.pts for f in frames]
    if all(a is not None and b is not None and a < b for a, b in zip(pts, pts[1:])):
        stamps = pts
    else:
        stamps = []
        for frame in frames:
            stamps.append(frame.dts if frame.dts is not None else stamps[-1] + (frame.duration or 1))
    return [(float((t - start) * time_base), f) for t, f in zip(stamps, frames)]
